# Engine micro-benchmarks: the per-packet cost of each proxy path on one core.
# Run: build/bench/engine_bench
add_executable(engine_bench ${CMAKE_CURRENT_LIST_DIR}/engine_bench.cpp)
target_link_libraries(engine_bench PRIVATE syngate_test_support syngate_core benchmark::benchmark)
