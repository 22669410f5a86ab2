//! Generates the ONNX protobuf types from `proto/onnx.proto` with protox (a pure-Rust protobuf
//! compiler: these machines have no `protoc`) and prost-build. Every `bytes` field becomes
//! `bytes::Bytes`, so decoding a model from a `Bytes` buffer slices tensor data out of the file
//! buffer instead of copying it.
fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"]).unwrap_or_else(|e| panic!("onnx.proto: {e}"));
    prost_build::Config::new().bytes(["."]).compile_fds(descriptors).unwrap_or_else(|e| panic!("prost-build: {e}"));
}
