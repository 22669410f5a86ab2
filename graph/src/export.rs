//! IR → ONNX protobuf, and saving models to disk.
//!
//! Export writes nodes in a topological order that follows each node's [`OrderKey`]: for an
//! untouched graph this is exactly the file's order, so import → export gives back the same
//! message. Saving streams the graph field by field to a temporary file and renames it into place:
//! memory stays near the size of the model already mapped, and a failed save leaves nothing behind.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufWriter, Write};
use std::path::Path;

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::atomic::AtomicFile;
use crate::error::ModelError;
use crate::ir::{ConstOrigin, Graph, NodeId, OrderKey, ValueDef, ValueId};
use crate::model::Model;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// Protobuf messages cannot exceed 2 GiB.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

/// Where tensor data goes when saving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPlacement {
    /// Tensors stored externally in the source stay external; the rest stay inline. A model too big
    /// for one protobuf message switches to [`DataPlacement::External`] with the default threshold.
    Keep,
    /// Every tensor inline in the model file.
    Inline,
    /// Tensors of at least `threshold` bytes go to one data file beside the model.
    External { threshold: u64 },
}

/// Options for [`save_model`].
#[derive(Clone, Debug)]
pub struct SaveOptions {
    pub placement: DataPlacement,
    /// The largest model file (protobuf message) written: protobuf's 2 GiB, lowered in tests.
    /// Above it `Keep` switches to external data and `Inline` fails with the reason.
    pub inline_limit: u64,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { placement: DataPlacement::Keep, inline_limit: PROTOBUF_LIMIT }
    }
}

/// Default threshold for external data: small tensors stay inline, as `onnx.save` does.
pub const DEFAULT_EXTERNAL_THRESHOLD: u64 = 1024;

/// The whole model as a protobuf message, tensors stored as in the IR.
pub fn model_to_proto(model: &Model) -> ModelProto {
    ModelProto { graph: Some(graph_to_proto(&model.graph)), ..model.meta.clone() }
}

/// The model as bytes a runtime can read from memory: every tensor inline (tract cannot resolve
/// external data from bytes) and dense (sparse initializers become ordinary ones).
pub fn encode_for_runtime(model: &Model) -> Vec<u8> {
    let mut proto = model_to_proto(&with_inline_data(model));
    if let Some(g) = proto.graph.as_mut() {
        crate::sparse::densify_graph(g);
    }
    proto.encode_to_vec()
}

/// The graph as a protobuf message.
pub fn graph_to_proto(g: &Graph) -> GraphProto {
    let mut proto = g.residual.clone();
    let name = |v: ValueId| g.value(v).name.clone();
    proto.node = emit_order(g)
        .into_iter()
        .map(|item| match item {
            Item::Op(id) => op_proto(g, id),
            Item::ConstNode(v) => const_node_proto(g, v),
        })
        .collect();
    let mut inits: Vec<(bool, OrderKey, TensorProto)> = g
        .value_ids()
        .filter_map(|v| {
            let c = g.value(v).constant()?;
            let (new, key) = match c.origin {
                ConstOrigin::Initializer(k) => (false, k),
                ConstOrigin::New(k) => (true, k),
                ConstOrigin::Node { .. } => return None,
            };
            Some((new, key, c.tensor.renamed(&name(v)).proto().clone()))
        })
        .collect();
    inits.sort_by_key(|(new, key, _)| (*new, *key));
    proto.initializer = inits.into_iter().map(|(_, _, t)| t).collect();
    let named = |(v, info): &(ValueId, crate::onnx::ValueInfoProto)| {
        let mut info = info.clone();
        info.name = Some(name(*v));
        info
    };
    proto.input = g.input_infos().iter().map(named).collect();
    proto.output = g.output_infos().iter().map(named).collect();
    proto.value_info = g
        .value_infos()
        .iter()
        .filter_map(|(v, info)| match v {
            Some(v) => g.is_alive(*v).then(|| named(&(*v, info.clone()))),
            None => Some(info.clone()),
        })
        .collect();
    proto
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Item {
    Op(NodeId),
    ConstNode(ValueId),
}

/// Operations and Constant nodes in a topological order following their order keys.
fn emit_order(g: &Graph) -> Vec<Item> {
    let mut items: Vec<(OrderKey, String, Item, Vec<ValueId>)> = Vec::new();
    for id in g.node_ids() {
        let n = g.node(id).expect("listed node");
        let reads = n.inputs().iter().flatten().chain(n.captures()).copied().collect();
        items.push((n.order, n.name().to_string(), Item::Op(id), reads));
    }
    for v in g.value_ids() {
        if let Some(c) = g.value(v).constant()
            && let ConstOrigin::Node { proto, inputs, order, .. } = &c.origin
        {
            items.push((*order, proto.name.clone().unwrap_or_default(), Item::ConstNode(v), inputs.clone()));
        }
    }
    items.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let index_of: HashMap<Item, usize> = items.iter().enumerate().map(|(i, it)| (it.2, i)).collect();
    let producer = |v: ValueId| -> Option<usize> {
        match &g.value(v).def {
            ValueDef::Op { node, .. } => index_of.get(&Item::Op(*node)).copied(),
            ValueDef::Constant(_) => index_of.get(&Item::ConstNode(v)).copied(),
            _ => None,
        }
    };
    let mut indegree = vec![0usize; items.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for (i, it) in items.iter().enumerate() {
        for &v in &it.3 {
            if let Some(p) = producer(v) {
                indegree[i] += 1;
                readers[p].push(i);
            }
        }
    }
    // Items are sorted by key, so the smallest index that is ready is the next to emit.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..items.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut out = Vec::with_capacity(items.len());
    let mut done = vec![false; items.len()];
    while let Some(Reverse(i)) = ready.pop() {
        out.push(items[i].2);
        done[i] = true;
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                ready.push(Reverse(r));
            }
        }
    }
    // A cyclic graph (only reachable by a faulty pass; validation reports it) still exports whole.
    out.extend((0..items.len()).filter(|&i| !done[i]).map(|i| items[i].2));
    out
}

fn op_proto(g: &Graph, id: NodeId) -> NodeProto {
    let n = g.node(id).expect("listed node");
    let name = |v: &Option<ValueId>| v.map(|v| g.value(v).name.clone()).unwrap_or_default();
    let mut proto = n.residual.clone();
    proto.input = n.inputs().iter().map(name).collect();
    proto.output = n.outputs().iter().map(name).collect();
    proto.attribute = n
        .attributes
        .iter()
        .map(|a| {
            let mut p = a.proto.clone();
            let mut subs = a.subgraphs.iter().map(graph_to_proto);
            if a.in_g {
                p.g = subs.next();
            }
            p.graphs = subs.collect();
            p
        })
        .collect();
    proto
}

fn const_node_proto(g: &Graph, v: ValueId) -> NodeProto {
    let value = g.value(v);
    let c = value.constant().expect("constant value");
    let ConstOrigin::Node { proto, inputs, modified, .. } = &c.origin else { unreachable!("constant node origin") };
    let mut proto = proto.clone();
    proto.output = vec![value.name.clone()];
    let is_constant = proto.op_type.as_deref() == Some("Constant");
    if !is_constant && !modified {
        proto.input = inputs.iter().map(|i| g.value(*i).name.clone()).collect();
        return proto;
    }
    let keeps_value_attr = is_constant && proto.attribute.len() == 1 && proto.attribute[0].name.as_deref() == Some("value");
    let sparse = c.is_sparse().then(|| crate::sparse::to_sparse(&c.tensor.renamed(&value.name)).ok()).flatten();
    if keeps_value_attr {
        proto.attribute[0].t = Some(c.tensor.proto().clone());
    } else if let Some(sparse) = sparse {
        proto.attribute[0].sparse_tensor = Some(sparse);
    } else if *modified || !is_constant {
        // The data changed and the original form (value_float, ConstantOfShape...) cannot hold it.
        proto.op_type = Some("Constant".into());
        proto.input.clear();
        proto.attribute = vec![AttributeProto {
            name: Some("value".into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(c.tensor.proto().clone()),
            ..Default::default()
        }];
    }
    proto
}

/// The model with every constant stored inline: borrowed as is when nothing is external, else a
/// copy sharing the tensor data.
fn with_inline_data(model: &Model) -> std::borrow::Cow<'_, Model> {
    let g = &model.graph;
    if !g.value_ids().any(|v| g.value(v).constant().is_some_and(|c| c.tensor.is_external())) {
        return std::borrow::Cow::Borrowed(model);
    }
    let mut model = model.clone();
    let g = &mut model.graph;
    let ids: Vec<ValueId> = g.value_ids().filter(|v| g.value(*v).constant().is_some_and(|c| c.tensor.is_external())).collect();
    for v in ids {
        let t = g.value(v).constant().expect("constant").tensor.inlined();
        g.restore_constant_storage(v, t);
    }
    std::borrow::Cow::Owned(model)
}

/// Writes a model atomically (temporary files renamed into place). With external data, the data
/// file is `<file name>.data` beside the model.
pub fn save_model(model: &Model, path: &Path, options: &SaveOptions) -> Result<(), ModelError> {
    // Which constants go to the external file: with `Keep`, exactly those that were external.
    let source_external: Vec<ValueId> =
        model.graph.value_ids().filter(|v| model.graph.value(*v).constant().is_some_and(|c| c.tensor.is_external())).collect();
    let mut model = with_inline_data(model);
    let mut proto = model_to_proto(&model);
    let placement = match &options.placement {
        DataPlacement::Keep if !source_external.is_empty() => DataPlacement::External { threshold: u64::MAX },
        DataPlacement::Keep if proto.encoded_len() as u64 > options.inline_limit => {
            DataPlacement::External { threshold: DEFAULT_EXTERNAL_THRESHOLD }
        }
        other => other.clone(),
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "model.onnx".into());
    let write_err = |source| ModelError::Write { path: path.to_path_buf(), source };
    let export_err = |e: crate::error::TensorError| ModelError::Export { path: path.to_path_buf(), message: e.to_string() };
    let mut data_file = None;
    if let DataPlacement::External { threshold } = placement {
        let location = format!("{file_name}.data");
        let data_path = dir.join(&location);
        let mut tmp = AtomicFile::new(&data_path).map_err(write_err)?;
        let mut writer = BufWriter::new(tmp.file());
        let mut offset = 0u64;
        let g = &mut model.to_mut().graph;
        let ids: Vec<ValueId> = if threshold == u64::MAX {
            source_external
        } else {
            g.value_ids().filter(|v| g.value(*v).constant().is_some_and(|c| c.tensor.byte_size() >= threshold)).collect()
        };
        for v in ids {
            let tensor = g.value(v).constant().expect("constant").tensor.clone();
            let ext = tensor.externalized(&location, offset).map_err(export_err)?;
            if g.restore_constant_storage(v, ext) {
                let raw = tensor.raw_bytes().map_err(export_err)?;
                writer.write_all(&raw).map_err(write_err)?;
                offset += raw.len() as u64;
            }
        }
        writer.flush().map_err(write_err)?;
        drop(writer);
        data_file = Some((tmp, data_path));
        proto = model_to_proto(&model);
    }
    if proto.encoded_len() as u64 > options.inline_limit.min(PROTOBUF_LIMIT) {
        let message = if data_file.is_some() {
            "the model is over 2 GiB even with its weights in external data (too many large attributes?)".to_string()
        } else {
            format!(
                "the model is {} bytes with every tensor inline, over the {} bytes a protobuf message can hold (2 GiB): store its weights as external data (convert --external-data)",
                proto.encoded_len(),
                options.inline_limit.min(PROTOBUF_LIMIT)
            )
        };
        return Err(ModelError::Export { path: path.to_path_buf(), message });
    }
    let mut tmp = AtomicFile::new(path).map_err(write_err)?;
    // `write_model_streaming` buffers by itself.
    write_model_streaming(proto, tmp.file()).map_err(write_err)?;
    if let Some((data_tmp, data_path)) = data_file {
        data_tmp.commit().map_err(|source| ModelError::Write { path: data_path, source })?;
    }
    tmp.commit().map_err(write_err)
}

/// Encodes a model into a writer without building the whole message in memory: the model fields,
/// then the graph's small fields, then each node and initializer one at a time. The result decodes
/// to the same message as `proto.encode_to_vec()`.
pub fn write_model_streaming(mut proto: ModelProto, w: &mut dyn Write) -> std::io::Result<()> {
    let graph = proto.graph.take();
    let mut sb = StreamBuf { w, buf: Vec::with_capacity(CHUNK), err: None };
    proto.encode(&mut sb).map_err(std::io::Error::other)?;
    let Some(mut small) = graph else { return sb.finish() };
    let nodes = std::mem::take(&mut small.node);
    let initializers = std::mem::take(&mut small.initializer);
    let len = small.encoded_len()
        + nodes.iter().map(|n| prost::encoding::message::encoded_len(1, n)).sum::<usize>()
        + initializers.iter().map(|t| prost::encoding::message::encoded_len(5, t)).sum::<usize>();
    encode_key(7, WireType::LengthDelimited, &mut sb);
    encode_varint(len as u64, &mut sb);
    for n in &nodes {
        prost::encoding::message::encode(1, n, &mut sb);
    }
    small.encode(&mut sb).map_err(std::io::Error::other)?;
    for t in &initializers {
        prost::encoding::message::encode(5, t, &mut sb);
    }
    sb.finish()
}

const CHUNK: usize = 64 * 1024;

/// A `BufMut` that streams into a writer through a fixed 64 KiB buffer; big slices (tensor data)
/// go straight to the writer, so memory does not grow with the largest tensor.
struct StreamBuf<'a> {
    w: &'a mut dyn Write,
    buf: Vec<u8>,
    err: Option<std::io::Error>,
}

impl StreamBuf<'_> {
    fn write(&mut self, data: &[u8]) {
        if self.err.is_none()
            && let Err(e) = self.w.write_all(data)
        {
            self.err = Some(e);
        }
    }
    fn flush_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write(&buf);
        self.buf = buf;
        self.buf.clear();
    }
    fn finish(mut self) -> std::io::Result<()> {
        self.flush_buf();
        self.err.map_or(Ok(()), Err)
    }
}

unsafe impl bytes::BufMut for StreamBuf<'_> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len();
        unsafe { self.buf.set_len(len + cnt) }
    }
    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        bytes::buf::UninitSlice::uninit(self.buf.spare_capacity_mut())
    }
    fn put_slice(&mut self, src: &[u8]) {
        if self.buf.capacity() - self.buf.len() < src.len() {
            self.flush_buf();
        }
        if src.len() >= CHUNK {
            self.write(src);
        } else {
            self.buf.extend_from_slice(src);
        }
    }
    fn put<T: bytes::Buf>(&mut self, mut src: T) {
        while bytes::Buf::has_remaining(&src) {
            let n = bytes::Buf::chunk(&src).len();
            self.put_slice(bytes::Buf::chunk(&src));
            bytes::Buf::advance(&mut src, n);
        }
    }
}

/// The bytes [`save_model`] writes for an all-inline model (deterministic).
pub fn encode_model(model: &Model) -> Vec<u8> {
    let mut out = Vec::new();
    write_model_streaming(model_to_proto(model), &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Structural equality through the exported proto (what the graph means in ONNX). Defined here,
/// beside the export it relies on, so that the IR module does not depend on the exporter.
impl PartialEq for Graph {
    fn eq(&self, other: &Self) -> bool {
        graph_to_proto(self) == graph_to_proto(other)
    }
}
