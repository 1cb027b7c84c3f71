# Debian package of syngate, tcptune and synflood: `cmake --build BUILD --target package` runs
# CPack with the DEB generator. Included from the top-level CMakeLists.txt before the programs'
# directories, because the prefix below is compiled into tcptune (its shipped-profile directory).
include_guard(GLOBAL)

# A Debian package installs under /usr and what it installs must be what the binaries look for,
# so /usr is also the default prefix of a plain `cmake --install` (pass -DCMAKE_INSTALL_PREFIX to
# install elsewhere; the package always uses /usr).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(WARNING "CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}: the Debian package installs under /usr "
                  "but tcptune would look for its profiles under ${CMAKE_INSTALL_PREFIX}; configure with "
                  "-DCMAKE_INSTALL_PREFIX=/usr before `--target package`")
endif()

set(SYNGATE_PACKAGE_CONTACT "syngate maintainers <syngate-maintainers@example.org>"
    CACHE STRING "Maintainer field of the Debian package")
set(syngate_debian_dir ${PROJECT_SOURCE_DIR}/deploy/debian)
set(syngate_doc_dir ${CMAKE_INSTALL_DATADIR}/doc/syngate)

# Called at the end of the top-level CMakeLists.txt, once every program target exists.
function(syngate_packaging)
  # syngate and tcptune install themselves; synflood's directory does not, and it belongs in the
  # package (its man page is section 1: a user tool, in bin/).
  install(TARGETS synflood RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

  # Absolute destinations: Debian's paths for these do not follow the prefix.
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/syngate.service ${PROJECT_SOURCE_DIR}/deploy/syngate@.service
          DESTINATION /lib/systemd/system)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/syngate.toml DESTINATION /etc/syngate)
  # The units' system user, created by the postinst.
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/syngate.sysusers DESTINATION /usr/lib/sysusers.d RENAME syngate.conf)

  # Man pages and the Debian changelog, compressed the way Debian wants them: gzip -9 -n (no name
  # or timestamp in the header, so the package is reproducible).
  set(gz_dir ${CMAKE_CURRENT_BINARY_DIR}/packaging)
  set(gz_outputs "")
  foreach(src docs/man/syngate.8 docs/man/tcptune.8 docs/man/synflood.1 deploy/debian/changelog)
    get_filename_component(name ${src} NAME)
    if(name STREQUAL "changelog")
      set(name changelog.Debian)
    endif()
    add_custom_command(
      OUTPUT ${gz_dir}/${name}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${gz_dir}
      COMMAND gzip -9 -n -c ${PROJECT_SOURCE_DIR}/${src} > ${gz_dir}/${name}.gz
      DEPENDS ${PROJECT_SOURCE_DIR}/${src}
      VERBATIM)
    list(APPEND gz_outputs ${gz_dir}/${name}.gz)
  endforeach()
  add_custom_target(syngate_docs_gz ALL DEPENDS ${gz_outputs})
  install(FILES ${gz_dir}/syngate.8.gz ${gz_dir}/tcptune.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
  install(FILES ${gz_dir}/synflood.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  install(FILES ${gz_dir}/changelog.Debian.gz ${syngate_debian_dir}/copyright DESTINATION ${syngate_doc_dir})

  install(FILES ${syngate_debian_dir}/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
          RENAME syngate)
  install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/lab.md
                ${PROJECT_SOURCE_DIR}/docs/tcptune.md DESTINATION ${syngate_doc_dir})
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/README.md DESTINATION ${syngate_doc_dir} RENAME deploy-README.md)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/deploy/prometheus ${PROJECT_SOURCE_DIR}/deploy/grafana
          DESTINATION ${syngate_doc_dir}/examples OPTIONAL
          FILES_MATCHING PATTERN "*.yml" PATTERN "*.json")
  # The BGP integration (docs/scale-out.md): the health loop where its example unit runs it (a
  # helper program: /usr/lib/syngate); the
  # BIRD snippet and the unit as examples, since each names the operator's addresses and daemons.
  install(PROGRAMS ${PROJECT_SOURCE_DIR}/deploy/bird/syngate-bird-health DESTINATION lib/syngate)
  # Empty, root's: what the units show the daemon at /sys/fs/bpf, with only its own directory of
  # the bpffs bound into it (deploy/syngate.service, the kernel path's pins).
  install(DIRECTORY DESTINATION lib/syngate/bpf-view)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/bird/bird.conf ${PROJECT_SOURCE_DIR}/deploy/bird/syngate-bird-health.service
          DESTINATION ${syngate_doc_dir}/examples/bird)

  set(CPACK_GENERATOR DEB)
  set(CPACK_PACKAGE_NAME syngate)
  set(CPACK_PACKAGE_VENDOR "syngate")
  set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
  # A Debian revision makes it a non-native package, whose changelog is changelog.Debian.gz; its
  # first line must name the same version (deploy/debian/changelog).
  set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
  set(CPACK_PACKAGE_CONTACT ${SYNGATE_PACKAGE_CONTACT})
  set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
  set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SYN-flood gateway, TCP sysctl tuner and flood generator")
  # Debian wants extended description lines under 80 columns.
  set(CPACK_PACKAGE_DESCRIPTION
      "syngate answers client SYNs to protected TCP services with SYN cookies from
NFQUEUE and proxies only the clients that complete the handshake, so a spoofed
SYN flood never reaches the backend and costs the gateway no memory.
tcptune applies, verifies and rolls back TCP sysctl profiles. synflood
generates bounded floods from spoofed ranges, replays pcaps and probes a
service as a legitimate client.")
  set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
  set(CPACK_DEBIAN_PACKAGE_SECTION net)
  set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "")
  # Library dependencies come from dpkg-shlibdeps; `syngate rules` runs iptables.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "iptables")
  set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus")
  set(CPACK_STRIP_FILES ON)
  set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
      OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
      ${syngate_debian_dir}/postinst ${syngate_debian_dir}/prerm ${syngate_debian_dir}/postrm
      ${syngate_debian_dir}/conffiles)
  set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
  include(CPack)
endfunction()
