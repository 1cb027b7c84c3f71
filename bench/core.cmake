# Micro-benchmarks of the pure core: SYN cookies, packet parsing, SYN-ACK building.
# Run: build/bench/core_bench   (each line reports items_per_second = operations per second)
add_executable(core_bench ${CMAKE_CURRENT_LIST_DIR}/core_bench.cpp)
target_link_libraries(core_bench PRIVATE syngate_test_support syngate_core benchmark::benchmark)
