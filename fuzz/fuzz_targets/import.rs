//! Fuzz target `import`: arbitrary bytes → `decode_model`; every model that imports must validate,
//! export and import again without panicking.

#![no_main]

use std::path::Path;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.onnx");
    let Ok(model) = whittle_graph::decode_model(Bytes::copy_from_slice(data), path, None) else { return };
    let _issues = whittle_graph::validate::validate(&model);
    let encoded = whittle_graph::encode_model(&model);
    if let Err(e) = whittle_graph::decode_model(Bytes::from(encoded), path, None) {
        panic!("a model that imported does not import again after export: {e}");
    }
});
