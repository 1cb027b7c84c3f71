# Debian's hardening flags, the ones `DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags`
# gives on Debian 12: a position-independent executable, the stack protector, fortified libc
# calls, format-string checks, and a read-only relocation table resolved at start (full RELRO,
# bind-now). Set here for every target, not only for the package, so that the binaries the tests
# run are the binaries the package ships. Included from the top-level CMakeLists.txt after the
# sanitizer options, before any target.
include_guard(GLOBAL)

option(SYNGATE_HARDENING "Build with Debian's hardening flags (PIE, stack protector, fortify, full RELRO, bind-now)" ON)
if(SYNGATE_HARDENING AND (SYNGATE_SANITIZE OR SYNGATE_FUZZ))
  # ASan replaces the very libc calls that fortify wraps, and its reports are what those builds
  # are for: hardening belongs to the builds that ship.
  message(STATUS "SYNGATE_HARDENING off: sanitizer builds (SYNGATE_SANITIZE, SYNGATE_FUZZ) are not hardened")
  set(SYNGATE_HARDENING OFF)
endif()

if(SYNGATE_HARDENING)
  include(CheckPIESupported)
  check_pie_supported(LANGUAGES C CXX)
  set(CMAKE_POSITION_INDEPENDENT_CODE ON)
  add_compile_options(-fstack-protector-strong -Wformat -Werror=format-security)
  # Fortify needs the optimiser (glibc warns at -O0, and -Werror makes that fatal), so a Debug
  # build goes without it. -U first: some toolchains predefine a level of their own.
  add_compile_options($<$<NOT:$<CONFIG:Debug>>:-U_FORTIFY_SOURCE> $<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
  add_link_options(LINKER:-z,relro LINKER:-z,now)
endif()
