# Generates C for the API protos with protoc-c into the build tree, and a FileDescriptorSet of
# every served proto (casca, health, reflection) embedded in the daemon for server reflection.

find_program(PROTOC protoc REQUIRED)
find_program(PROTOC_C protoc-c REQUIRED)
set(PROTOBUF_INCLUDE /usr/include)          # google/protobuf/*.proto (libprotobuf-dev)
set(GRPC_PROTO_INCLUDE /usr/share/grpc-proto) # grpc/reflection (grpc-proto); health is in proto/
set(GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${GEN_DIR})

file(GLOB CASCA_PROTOS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/proto/casca/v1/*.proto)

# name-relative-to-include-root;include-root pairs
set(PROTO_UNITS)
foreach(p ${CASCA_PROTOS})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${p})
  list(APPEND PROTO_UNITS "${rel}|${CMAKE_SOURCE_DIR}/proto")
endforeach()
foreach(rel google/protobuf/timestamp.proto google/protobuf/duration.proto google/protobuf/descriptor.proto)
  list(APPEND PROTO_UNITS "${rel}|${PROTOBUF_INCLUDE}")
endforeach()
list(APPEND PROTO_UNITS "grpc/health/v1/health.proto|${CMAKE_SOURCE_DIR}/proto")
# Prometheus remote_write (prometheus/*.proto, gogoproto options stripped)
list(APPEND PROTO_UNITS "prometheus/types.proto|${CMAKE_SOURCE_DIR}/proto"
     "prometheus/remote.proto|${CMAKE_SOURCE_DIR}/proto")
# OTLP metrics, unchanged in proto/; protoc-c 1.4 does not take proto3 `optional` (a histogram's
# sum, min, max), so the C is generated from a copy where each is written as the one-field oneof
# protoc itself makes of it (`oneof _sum { double sum = 5; }`): the wire format is the same and
# presence is kept (_sum_case says whether a sum was sent).
set(OTLP_PROTOS common/v1/common.proto resource/v1/resource.proto metrics/v1/metrics.proto
    collector/metrics/v1/metrics_service.proto)
set(OTLP_C_SRC ${GEN_DIR}/otlp-src)
foreach(rel ${OTLP_PROTOS})
  set(src ${CMAKE_SOURCE_DIR}/proto/opentelemetry/proto/${rel})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
  file(READ ${src} text)
  string(REGEX REPLACE "optional double ([a-z_]+) = ([0-9]+);" "oneof _\\1 { double \\1 = \\2; }"
         text "${text}")
  file(WRITE ${OTLP_C_SRC}/opentelemetry/proto/${rel} "${text}")
  list(APPEND PROTO_UNITS "opentelemetry/proto/${rel}|${OTLP_C_SRC}")
endforeach()
list(APPEND PROTO_UNITS "grpc/reflection/v1/reflection.proto|${GRPC_PROTO_INCLUDE}")

set(PROTO_C_SOURCES)
foreach(unit ${PROTO_UNITS})
  string(REPLACE "|" ";" parts ${unit})
  list(GET parts 0 rel)
  list(GET parts 1 root)
  string(REGEX REPLACE "\\.proto$" "" base ${rel})
  set(out_c ${GEN_DIR}/${base}.pb-c.c)
  set(out_h ${GEN_DIR}/${base}.pb-c.h)
  add_custom_command(
    OUTPUT ${out_c} ${out_h}
    COMMAND ${PROTOC_C} --c_out=${GEN_DIR} -I${OTLP_C_SRC} -I${CMAKE_SOURCE_DIR}/proto
            -I${GRPC_PROTO_INCLUDE}
            -I${PROTOBUF_INCLUDE} ${root}/${rel}
    DEPENDS ${root}/${rel}
    COMMENT "protoc-c ${rel}")
  list(APPEND PROTO_C_SOURCES ${out_c})
endforeach()

add_library(casca_proto STATIC ${PROTO_C_SOURCES})
target_include_directories(casca_proto PUBLIC ${GEN_DIR})
target_link_libraries(casca_proto PUBLIC PkgConfig::PROTOBUF_C)

# The descriptor set served by reflection: casca's files, health, both reflection versions,
# with their imports, so grpcurl needs no proto files.
set(DESC_FILE ${GEN_DIR}/casca_descriptors.pb)
set(DESC_C ${GEN_DIR}/casca_descriptors.c)
set(DESC_INPUTS)
foreach(p ${CASCA_PROTOS})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${p})
  list(APPEND DESC_INPUTS ${rel})
endforeach()
list(APPEND DESC_INPUTS grpc/health/v1/health.proto grpc/reflection/v1/reflection.proto
     grpc/reflection/v1alpha/reflection.proto
     opentelemetry/proto/collector/metrics/v1/metrics_service.proto)
add_custom_command(
  OUTPUT ${DESC_FILE}
  COMMAND ${PROTOC} --include_imports --descriptor_set_out=${DESC_FILE}
          -I${CMAKE_SOURCE_DIR}/proto -I${GRPC_PROTO_INCLUDE} -I${PROTOBUF_INCLUDE} ${DESC_INPUTS}
  DEPENDS ${CASCA_PROTOS} ${CMAKE_SOURCE_DIR}/proto/grpc/health/v1/health.proto
  COMMENT "protoc descriptor set for reflection")
add_custom_command(
  OUTPUT ${DESC_C}
  COMMAND ${CMAKE_COMMAND} -DIN=${DESC_FILE} -DOUT=${DESC_C} -DSYMBOL=casca_descriptor_set
          -P ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${DESC_FILE} ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  COMMENT "embedding descriptor set")
add_library(casca_descriptors STATIC ${DESC_C})
