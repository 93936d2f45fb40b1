# Tests of the C ABI outside Catch2 (included from tests/CMakeLists.txt):
#  capi_c_test         a pure-C program against libkvtier.so

add_executable(capi_c_test ${PROJECT_SOURCE_DIR}/tests/capi_c_test.c)
target_link_libraries(capi_c_test PRIVATE kvtier_shared)
set_target_properties(capi_c_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(capi_c_test PRIVATE -Wall -Wextra -Wpedantic -Werror)
add_test(NAME capi_c_test COMMAND capi_c_test)

