# Proves that an edit to any header the BPF program includes rebuilds its object (issue 22,
# item 1): otherwise an incremental build tests a stale program against fresh C++, exactly where
# the spec headers must be one text for both.
#
# The real bpf/CMakeLists.txt is built in a scratch copy of bpf/ and include/ (so the checkout
# and its build tree are never touched); then each header below is touched in the copy and the
# object must be rebuilt, and a build with nothing touched must leave it alone (so the check can
# tell the two apart).
#
# cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch> -DGENERATOR=<generator> -DCLANG=<clang>
#       -DBPFTOOL=<bpftool> -P bpf_depfile_test.cmake
foreach(v SOURCE_DIR WORK_DIR GENERATOR CLANG BPFTOOL)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "bpf_depfile_test: -D${v}= is required")
  endif()
endforeach()

# Headers that only the compiler's dependency list can name: a spec header, the ABI header, a
# lib header (none of them is the program's source).
set(headers include/syngate/spec/syn_rules.h include/syngate/bpf/xdp_abi.h bpf/lib/parse.h)

set(src ${WORK_DIR}/src)
set(bin ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${src})
file(COPY ${SOURCE_DIR}/bpf ${SOURCE_DIR}/include DESTINATION ${src})
# The project's own minimum version, so the scratch build runs under the same policies.
file(STRINGS ${SOURCE_DIR}/CMakeLists.txt minimum REGEX "^cmake_minimum_required")
file(WRITE ${src}/CMakeLists.txt "${minimum}
project(syngate_bpf_depfile_probe LANGUAGES C)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf)
set(SYNGATE_BPF_CLANG \"${CLANG}\")
set(SYNGATE_BPFTOOL \"${BPFTOOL}\")
add_subdirectory(bpf)
")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bpf_depfile_test: ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

run(${CMAKE_COMMAND} -S ${src} -B ${bin} -G ${GENERATOR})
run(${CMAKE_COMMAND} --build ${bin} --target syngate_xdp_bpf)
set(object ${bin}/bpf/syngate_xdp.bpf.o)
if(NOT EXISTS ${object})
  message(FATAL_ERROR "bpf_depfile_test: no ${object} after the build")
endif()

# Builds again and says whether the object was rewritten. The pause puts a touched header's time
# clearly after the object's whatever the file system's timestamp resolution.
function(rebuilt touch result)
  file(TIMESTAMP ${object} before "%s.%f" UTC)
  execute_process(COMMAND ${CMAKE_COMMAND} -E sleep 1.1)
  if(touch)
    file(TOUCH ${src}/${touch})
  endif()
  run(${CMAKE_COMMAND} --build ${bin} --target syngate_xdp_bpf)
  file(TIMESTAMP ${object} after "%s.%f" UTC)
  if(before STREQUAL after)
    set(${result} FALSE PARENT_SCOPE)
  else()
    set(${result} TRUE PARENT_SCOPE)
  endif()
endfunction()

rebuilt("" idle)
if(idle)
  message(FATAL_ERROR "bpf_depfile_test: the object was rebuilt with nothing changed; the check below would prove nothing")
endif()
set(failed "")
foreach(h ${headers})
  if(NOT EXISTS ${src}/${h})
    message(FATAL_ERROR "bpf_depfile_test: ${h} does not exist; update the list")
  endif()
  rebuilt(${h} yes)
  if(yes)
    message(STATUS "an edit to ${h} rebuilds syngate_xdp.bpf.o")
  else()
    message(STATUS "an edit to ${h} does NOT rebuild syngate_xdp.bpf.o")
    list(APPEND failed ${h})
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
if(failed)
  message(FATAL_ERROR "bpf_depfile_test: stale BPF object after editing: ${failed} (is the DEPFILE in bpf/CMakeLists.txt?)")
endif()
