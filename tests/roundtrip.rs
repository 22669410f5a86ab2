//! Lossless round trip: import → export gives back the original message field by field.

use prost::Message;
use whittle_graph::onnx::ModelProto;
use whittle_tests::shared_models;

#[test]
fn shared_models_roundtrip_field_by_field() {
    let Some(models) = shared_models() else { return };
    for path in models {
        let original = ModelProto::decode(bytes::Bytes::from(std::fs::read(&path).unwrap())).unwrap();
        let model = whittle_graph::load_model(&path).unwrap();
        let exported = whittle_graph::model_to_proto(&model);
        assert!(exported == original, "{}: exported proto differs", path.display());
        let bytes = whittle_graph::encode_model(&model);
        let decoded = ModelProto::decode(bytes::Bytes::from(bytes)).unwrap();
        assert!(decoded == original, "{}: encoded bytes decode differently", path.display());
    }
}
