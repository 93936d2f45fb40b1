# Tests of the C ABI outside Catch2 (included from tests/CMakeLists.txt):
#  capi_c_test         a pure-C program against libkvtier.so
#  capi_python_test    the Python package's tests, with Debian's python3
#  capi_rust_test      the Rust crate: cargo test --offline, then its example
#  capi_install_test   cmake --install into a temp prefix, then a consumer
#                      through find_package, pkg-config, Python and Rust
# Debian's tools are used (/usr/bin first), as on CI. A missing tool fails
# the configure; -DKVTIER_BINDING_TESTS=OFF leaves these tests out.
option(KVTIER_BINDING_TESTS "Python, Rust and install tests of the C ABI" ON)

add_executable(capi_c_test ${PROJECT_SOURCE_DIR}/tests/capi_c_test.c)
target_link_libraries(capi_c_test PRIVATE kvtier_shared)
set_target_properties(capi_c_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(capi_c_test PRIVATE -Wall -Wextra -Wpedantic -Werror)
add_test(NAME capi_c_test COMMAND capi_c_test)

if(NOT KVTIER_BINDING_TESTS)
  message(STATUS "kvtier: Python/Rust/install tests of the C ABI left out (KVTIER_BINDING_TESTS=OFF)")
  return()
endif()
if(NOT KVTIER_SANITIZE STREQUAL "")
  # python3 and Rust executables do not load the sanitizer runtime first.
  message(STATUS "kvtier: Python/Rust/install tests of the C ABI left out in a ${KVTIER_SANITIZE} sanitizer build")
  return()
endif()

foreach(tool python3 cargo pkg-config)
  string(TOUPPER "${tool}" var)
  string(REPLACE "-" "_" var "KVTIER_${var}")
  find_program(${var} ${tool} PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(${var} ${tool})
  if(NOT ${var})
    message(FATAL_ERROR "kvtier: ${tool} not found; the C ABI's binding tests need it. "
                        "Install Debian's packages with .ci/install-deps, or configure "
                        "with -DKVTIER_BINDING_TESTS=OFF to leave these tests out.")
  endif()
endforeach()
message(STATUS "kvtier: binding tests use ${KVTIER_PYTHON3}, ${KVTIER_CARGO}, ${KVTIER_PKG_CONFIG}")

set(_kvtier_cargo_env
  CARGO_HOME=${PROJECT_BINARY_DIR}/cargo-home
  CARGO_TARGET_DIR=${PROJECT_BINARY_DIR}/cargo-target
  CARGO_NET_OFFLINE=true)

add_test(NAME capi_python_test
  COMMAND ${KVTIER_PYTHON3} -B ${PROJECT_SOURCE_DIR}/tests/python/test_kvtier.py -v)
set_tests_properties(capi_python_test PROPERTIES ENVIRONMENT
  "PYTHONPATH=${PROJECT_SOURCE_DIR}/src/bindings/python;KVTIER_LIBRARY=$<TARGET_FILE:kvtier_shared>")

add_test(NAME capi_rust_test
  COMMAND ${CMAKE_COMMAND} -E env ${_kvtier_cargo_env}
          KVTIER_LIB_DIR=$<TARGET_FILE_DIR:kvtier_shared>
          sh -c "\"$0\" test --offline --manifest-path \"$1\" && \"$0\" run --offline --manifest-path \"$1\""
          ${KVTIER_CARGO} ${PROJECT_SOURCE_DIR}/src/bindings/rust/Cargo.toml)
set_tests_properties(capi_rust_test PROPERTIES RESOURCE_LOCK kvtier_cargo TIMEOUT 600)

add_test(NAME capi_install_test
  COMMAND ${CMAKE_COMMAND} -E env ${_kvtier_cargo_env}
          KVTIER_PYTHON3=${KVTIER_PYTHON3} KVTIER_CARGO=${KVTIER_CARGO}
          KVTIER_PKG_CONFIG=${KVTIER_PKG_CONFIG} KVTIER_CMAKE=${CMAKE_COMMAND}
          KVTIER_CC=${CMAKE_C_COMPILER}
          sh ${PROJECT_SOURCE_DIR}/tests/install/run.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
set_tests_properties(capi_install_test PROPERTIES RESOURCE_LOCK kvtier_cargo TIMEOUT 600)
