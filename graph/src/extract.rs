//! Standalone models cut out of a graph: one operation with its constants, its other inputs as
//! graph inputs and its outputs as graph outputs. Passes time or check one layer alone this way
//! (a rewrite applied to the cut-out layer is the rewrite they would apply to the whole graph).

use crate::builder::GraphBuilder;
use crate::{Model, NodeId};

/// The operation `node` of `model` as a model of its own: constant inputs stay constants, every
/// other input becomes a graph input with its known type and shape, and the outputs keep their
/// names, types and shapes. The opset imports are the model's. Declines operations with
/// subgraphs and inputs of unknown type.
pub fn single_node_model(model: &Model, node: NodeId) -> Result<Model, String> {
    let g = &model.graph;
    let n = g.node(node).ok_or("the node was removed")?;
    if n.attributes.iter().any(|a| !a.subgraphs.is_empty()) {
        return Err(format!("{} has subgraphs", g.node_label(node)));
    }
    let mut b = GraphBuilder::new(model.opset("").unwrap_or(13));
    let mut inputs = Vec::with_capacity(n.inputs().len());
    for slot in n.inputs() {
        let Some(v) = *slot else {
            inputs.push(None);
            continue;
        };
        let value = g.value(v);
        let id = match g.constant(v) {
            Some(t) => b.constant(&value.name, t.clone()),
            None => {
                let dtype = value.dtype.ok_or_else(|| format!("input `{}` has no known element type", value.name))?;
                let shape = value.shape.clone().ok_or_else(|| format!("input `{}` has no known shape", value.name))?;
                b.input_shape(&value.name, dtype, shape)
            }
        };
        inputs.push(Some(id));
    }
    let names: Vec<String> = n.outputs().iter().map(|o| o.map(|v| g.value(v).name.clone()).unwrap_or_default()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let attributes = n.attributes.iter().map(|a| a.proto.clone()).collect();
    let id = b.node_id(n.op_type(), &inputs, &name_refs, attributes);
    let outputs: Vec<_> = b.graph_mut().node(id).expect("just added").outputs().to_vec();
    for (out, orig) in outputs.iter().zip(n.outputs()) {
        let (Some(out), Some(orig)) = (out, orig) else { continue };
        let (dtype, shape) = (g.value(*orig).dtype, g.value(*orig).shape.clone());
        let v = b.graph_mut().value_mut(*out);
        v.dtype = dtype;
        v.shape = shape;
        b.output(*out);
    }
    let mut cut = b.finish();
    cut.meta.opset_import = model.meta.opset_import.clone();
    cut.meta.ir_version = model.meta.ir_version.or(cut.meta.ir_version);
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::attr_ints;
    use crate::{DataType, Tensor};

    #[test]
    fn a_conv_alone_keeps_its_weights_attributes_and_shapes() {
        let mut b = GraphBuilder::new(11);
        let x = b.input("x", DataType::Float, &[1, 2, 5, 5]);
        let r = b.node("Relu", &[x], &["r"], vec![])[0];
        let w = b.constant("w", Tensor::from_f32("w", &[3, 2, 1, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let y = b.node("Conv", &[r, w], &["y"], vec![attr_ints("strides", &[2, 2])])[0];
        b.output(y);
        let mut m = b.finish();
        crate::shape::infer::infer_shapes(&mut m, &Default::default()).unwrap();
        let conv = m.graph.value(y).producer().unwrap();
        let cut = single_node_model(&m, conv).unwrap();
        let text = crate::text::model_text(&cut, &crate::text::TextOptions::default());
        assert!(text.contains("r: f32[1,2,5,5]"), "{text}");
        assert!(text.contains("strides"), "{text}");
        assert_eq!(cut.graph.inputs().count(), 1);
        assert_eq!(cut.opset(""), Some(11));
        assert!(crate::validate::validate(&cut).is_empty());
        let out = cut.graph.outputs().next().unwrap();
        assert_eq!(cut.graph.value(out).shape.as_ref().and_then(|s| s.concrete()), Some(vec![1, 3, 3, 3]));
    }
}
