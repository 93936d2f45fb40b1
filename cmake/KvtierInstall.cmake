# `cmake --install`: libkvtier.so (the C ABI only), include/kvtier/kvtier.h,
# the CMake package (find_package(kvtier) -> kvtier::kvtier), kvtier.pc for
# pkg-config, and the Python package `kvtier` (which finds the library by a
# path relative to itself). Every installed file is relocatable
# (`cmake --install build --prefix DIR` works for any DIR).
include(CMakePackageConfigHelpers)

set(KVTIER_PYTHON_INSTALL_DIR "lib/python3/dist-packages" CACHE STRING
    "Where the Python package kvtier is installed, relative to the prefix")
set(_kvtier_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/kvtier)

set_target_properties(kvtier_shared PROPERTIES EXPORT_NAME kvtier)
install(TARGETS kvtier_shared EXPORT kvtierTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/kvtier/kvtier.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kvtier)
install(EXPORT kvtierTargets NAMESPACE kvtier:: DESTINATION ${_kvtier_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kvtierConfig.cmake.in
  ${PROJECT_BINARY_DIR}/kvtierConfig.cmake INSTALL_DESTINATION ${_kvtier_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kvtierConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kvtierConfig.cmake
              ${PROJECT_BINARY_DIR}/kvtierConfigVersion.cmake
  DESTINATION ${_kvtier_cmake_dir})

# pkg-config: prefix found from the .pc file's own directory.
file(RELATIVE_PATH KVTIER_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" KVTIER_PC_TO_PREFIX "${KVTIER_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvtier.pc.in ${PROJECT_BINARY_DIR}/kvtier.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kvtier.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Python: the package plus _install.py naming the library relative to it.
file(RELATIVE_PATH KVTIER_PY_TO_LIBDIR /prefix/${KVTIER_PYTHON_INSTALL_DIR}/kvtier
     /prefix/${CMAKE_INSTALL_LIBDIR})
file(WRITE ${PROJECT_BINARY_DIR}/python/_install.py
  "# Written by cmake --install: where libkvtier.so is, relative to this package.\n"
  "LIBRARY = \"${KVTIER_PY_TO_LIBDIR}/libkvtier.so.0\"\n")
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/bindings/python/kvtier
  DESTINATION ${KVTIER_PYTHON_INSTALL_DIR} FILES_MATCHING PATTERN "*.py"
  PATTERN "__pycache__" EXCLUDE)
install(FILES ${PROJECT_BINARY_DIR}/python/_install.py
  DESTINATION ${KVTIER_PYTHON_INSTALL_DIR}/kvtier)
