# libedgellama: the C API library, its install rules, CMake package config and pkg-config file,
# and the C examples. Included from CMakeLists.txt when EDGELLAMA_C_API is ON.
enable_language(C)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(EDGELLAMA_VERSION 0.1.0)    # = EDGELLAMA_VERSION_STRING in cpp/include/edgellama.h
set(EDGELLAMA_ABI_VERSION 1)    # = EDGELLAMA_ABI_VERSION: the shared library's SOVERSION

add_library(edgellama SHARED ${CMAKE_CURRENT_SOURCE_DIR}/cpp/capi/edgellama_c.cpp)
# The core is linked in statically and stays private: only the edgellama_* C functions are
# exported (hidden visibility for the C layer; a version script also hides the core's C++
# symbols, which were compiled with default visibility for the Python module).
target_link_libraries(edgellama PRIVATE edgellama_core)
target_compile_definitions(edgellama PRIVATE EDGELLAMA_BUILDING_LIBRARY=1)
target_compile_options(edgellama PRIVATE "$<IF:$<CXX_COMPILER_ID:MSVC>,/W3,-Wall;-Wextra>")
set_target_properties(edgellama PROPERTIES
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON
  VERSION ${EDGELLAMA_VERSION}
  SOVERSION ${EDGELLAMA_ABI_VERSION}
  PUBLIC_HEADER ${CMAKE_CURRENT_SOURCE_DIR}/cpp/include/edgellama.h)
if(NOT APPLE AND NOT MSVC)
  target_link_options(edgellama PRIVATE
    "-Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/cmake/edgellama.map" "-Wl,--no-undefined")
  set_target_properties(edgellama PROPERTIES LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/edgellama.map)
endif()
# Users include only edgellama.h (the C++ headers beside it in cpp/include are not installed).
target_include_directories(edgellama PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/cpp/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

add_executable(edgellama_chat ${CMAKE_CURRENT_SOURCE_DIR}/examples/c/chat.c)
set_target_properties(edgellama_chat PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON OUTPUT_NAME chat)
target_compile_options(edgellama_chat PRIVATE "$<IF:$<C_COMPILER_ID:MSVC>,/W3,-Wall;-Wextra;-pedantic>")
target_link_libraries(edgellama_chat PRIVATE edgellama)

install(TARGETS edgellama EXPORT edgellamaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT edgellamaTargets NAMESPACE edgellama::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/edgellama)
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/edgellamaConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/edgellama)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfigVersion.cmake
  VERSION ${EDGELLAMA_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/edgellama)
# The .pc file is relocatable (prefix from its own location), so `cmake --install --prefix X`
# gives a correct file for any X, not just the prefix chosen at configure time.
file(RELATIVE_PATH EDGELLAMA_PC_TO_PREFIX "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/edgellama.pc.in ${CMAKE_CURRENT_BINARY_DIR}/edgellama.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgellama.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(EDGELLAMA_SANITIZE)
  # the example is an ASan program too (scripts/sanitize_tests.sh runs it with leak detection)
  target_compile_options(edgellama_chat PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(edgellama_chat PRIVATE -fsanitize=address,undefined)
endif()
