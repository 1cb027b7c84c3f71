# diagnose benchmark: counts 100k+ TCP sockets in a private netns with tcptune's sock_diag scan and
# with `ss -tan`, and reports the ratio. Needs root (it creates and deletes its own netns); not in ctest.
# Run: sudo build/bench/tuner_diag_bench --sockets 120000 --runs 7 --tcptune build/tuner/tcptune
add_executable(tuner_diag_bench ${CMAKE_CURRENT_LIST_DIR}/tuner_diag_bench.cpp)
target_link_libraries(tuner_diag_bench PRIVATE tcptune_sys tcptune_lib CLI11::CLI11)
