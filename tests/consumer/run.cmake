# Installs the project from BUILD_DIR into a fresh prefix, then configures, builds and runs the
# consumer against it. Fails on the first step that fails.
set(work "${BUILD_DIR}/consumer-check")
file(REMOVE_RECURSE "${work}")

function(step)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "failed (${result}): ${ARGN}")
    endif()
endfunction()

step(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${work}/prefix" --component Unspecified)
step(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${work}/build" -G Ninja
     -DCMAKE_PREFIX_PATH=${work}/prefix -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
     "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
step(${CMAKE_COMMAND} --build "${work}/build")
step("${work}/build/consumer")
