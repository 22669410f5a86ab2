//! ONNX protobuf → IR.
//!
//! Loading maps the file into memory and decodes it into protos whose `bytes` fields are slices of
//! that mapping, so weights are never copied. Constants become first-class values whatever the
//! file used: initializers, `Constant` nodes, and `ConstantOfShape` of a constant shape. Every
//! structural problem found is collected and reported together, naming the node or tensor.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use crate::dtype::DataType;
use crate::error::{GraphIssue, ModelError};
use crate::ir::{Attribute, ConstOrigin, Constant, Graph, NodeId, OrderKey, ValueDef, ValueId};
use crate::model::Model;
use crate::onnx::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::shape::{Shape, tensor_type_parts};
use crate::tensor::Tensor;

/// A `ConstantOfShape` bigger than this many elements stays an operation rather than being
/// materialised as a constant tensor.
const MAX_SPLAT_ELEMENTS: u64 = 1 << 24;

/// Reads a model file. External data files are resolved against the model's folder.
pub fn load_model(path: &Path) -> Result<Model, ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    // Only regular files: opening a FIFO would block forever.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(ModelError::Io { path: path.to_path_buf(), source: std::io::Error::other("not a regular file") });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only; like every tool reading model files, we assume the file is
    // not truncated by another process while we hold it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let bytes = Bytes::from_owner(map);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    decode_model(bytes, path, Some(&base))
}

/// Decodes a model from bytes. `path` names the source in errors; `base_dir` is where external
/// data files live (`None`: a model using external data is an error).
pub fn decode_model(bytes: Bytes, path: &Path, base_dir: Option<&Path>) -> Result<Model, ModelError> {
    let proto = ModelProto::decode(bytes).map_err(|e| ModelError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
    import_model(proto, path, base_dir)
}

/// Imports a decoded model.
pub fn import_model(mut proto: ModelProto, path: &Path, base_dir: Option<&Path>) -> Result<Model, ModelError> {
    let not_a_model = |reason: &str| ModelError::NotAModel { path: path.to_path_buf(), reason: reason.to_string() };
    let graph = proto.graph.take().ok_or_else(|| not_a_model("it has no graph"))?;
    if proto.ir_version.is_none() {
        return Err(not_a_model("it has no ir_version"));
    }
    if proto.opset_import.is_empty() {
        return Err(not_a_model("it imports no operator set"));
    }
    let mut ctx = Importer { external: ExternalLoader::new(base_dir), issues: Vec::new() };
    let (graph, captured) = ctx.import_graph(graph, &|_| false)?;
    for name in captured {
        ctx.issues.push(GraphIssue::Other(format!("the main graph reads '{name}' from an outer scope it does not have")));
    }
    if !ctx.issues.is_empty() {
        return Err(ModelError::Invalid { path: path.to_path_buf(), issues: ctx.issues });
    }
    Ok(Model { meta: proto, graph })
}

struct Importer {
    external: ExternalLoader,
    issues: Vec<GraphIssue>,
}

impl Importer {
    /// Imports one graph. `outer` tells whether a name is defined in an enclosing graph. Returns the
    /// graph and the outer names it reads.
    fn import_graph(&mut self, mut proto: GraphProto, outer: &dyn Fn(&str) -> bool) -> Result<(Graph, Vec<String>), ModelError> {
        let nodes = std::mem::take(&mut proto.node);
        let initializers = std::mem::take(&mut proto.initializer);
        let inputs = std::mem::take(&mut proto.input);
        let outputs = std::mem::take(&mut proto.output);
        let value_info = std::mem::take(&mut proto.value_info);
        let mut g = Graph::default();
        g.residual = proto;
        let mut captured: Vec<String> = Vec::new();
        let mut definer: HashMap<String, String> = HashMap::new();

        let sparse_names: Vec<String> = g.residual.sparse_initializer.iter().filter_map(|s| s.values.as_ref()?.name.clone()).collect();
        for name in sparse_names {
            self.define(&mut g, &mut definer, &name, "a sparse initializer", ValueDef::Sparse);
        }

        for (i, t) in initializers.into_iter().enumerate() {
            let name = t.name.clone().unwrap_or_default();
            let def = match self.tensor(t) {
                Ok(tensor) => ValueDef::Constant(Box::new(Constant {
                    tensor,
                    origin: ConstOrigin::Initializer(OrderKey { major: i as u64, minor: 0 }),
                })),
                Err(()) => ValueDef::Undefined,
            };
            self.define(&mut g, &mut definer, &name, "an initializer", def);
        }

        for info in inputs {
            let name = info.name.clone().unwrap_or_default();
            let id = match g.value_by_name(&name) {
                Some(id) if g.value(id).constant().is_some() => id,
                _ => self.define(&mut g, &mut definer, &name, "a graph input", ValueDef::Input),
            };
            self.declare_type(&mut g, id, &info);
            g.inputs.push((id, info));
        }

        // Pass 1: define every node output (files are not always topologically sorted).
        let mut pending: Vec<(NodeId, Vec<String>)> = Vec::new();
        for (k, mut node) in nodes.into_iter().enumerate() {
            let order = OrderKey { major: k as u64, minor: 0 };
            if is_default_op(&node, "Constant")
                && node.output.len() == 1
                && node.input.is_empty()
                && let Some(tensor) = self.constant_node_tensor(&mut node)
            {
                let name = node.output[0].clone();
                let label = format!("Constant node '{}'", node.name.as_deref().unwrap_or(""));
                let origin = ConstOrigin::Node { proto: node, inputs: Vec::new(), order, modified: false };
                self.define(&mut g, &mut definer, &name, &label, ValueDef::Constant(Box::new(Constant { tensor, origin })));
                continue;
            }
            let input_names = std::mem::take(&mut node.input);
            let output_names = std::mem::take(&mut node.output);
            let attrs = std::mem::take(&mut node.attribute);
            let label = format!("node '{}' ({})", node.name.as_deref().unwrap_or(""), node.op_type.as_deref().unwrap_or(""));
            let id = g.add_node(node, Vec::new(), Vec::new(), &[], order);
            let mut outs = Vec::new();
            for (slot, name) in output_names.iter().enumerate() {
                outs.push((!name.is_empty()).then(|| self.define(&mut g, &mut definer, name, &label, ValueDef::Op { node: id, slot })));
            }
            g.node_mut(id).expect("just added").outputs = outs;
            // Attributes are imported in pass 2 (subgraphs need every local name).
            g.node_mut(id).expect("just added").attributes =
                attrs.into_iter().map(|proto| Attribute { proto, subgraphs: Vec::new(), in_g: false }).collect();
            pending.push((id, input_names));
        }

        // Pass 2: resolve inputs and subgraphs.
        let local: HashSet<String> = definer.keys().cloned().collect();
        let scope = |n: &str| local.contains(n) || outer(n);
        for (id, input_names) in &pending {
            let (label, op) = {
                let n = g.node(*id).expect("imported node");
                (n.name().to_string(), n.op_type().to_string())
            };
            for name in input_names {
                let v = if name.is_empty() { None } else { self.resolve(&mut g, name, outer, &mut captured, &label, &op) };
                g.push_input(*id, v);
            }
            let attrs = std::mem::take(&mut g.node_mut(*id).expect("imported node").attributes);
            let mut imported = Vec::with_capacity(attrs.len());
            let mut reads: Vec<String> = Vec::new();
            for Attribute { mut proto, .. } in attrs {
                let mut subgraphs = Vec::new();
                let in_g = proto.g.is_some();
                for sub in proto.g.take().into_iter().chain(std::mem::take(&mut proto.graphs)) {
                    let (sg, names) = self.import_graph(sub, &scope)?;
                    subgraphs.push(sg);
                    reads.extend(names);
                }
                imported.push(Attribute { proto, subgraphs, in_g });
            }
            g.node_mut(*id).expect("imported node").attributes = imported;
            reads.sort();
            reads.dedup();
            for name in reads {
                if let Some(v) = self.resolve(&mut g, &name, outer, &mut captured, &label, &op) {
                    g.add_capture(*id, v);
                }
            }
        }

        for (id, _) in &pending {
            g.constant_of_shape_as_constant(*id);
        }

        for info in outputs {
            let name = info.name.clone().unwrap_or_default();
            let id = match g.value_by_name(&name) {
                Some(id) => Some(id),
                None if outer(&name) => {
                    captured.push(name.clone());
                    Some(g.push_value(&name, ValueDef::Outer))
                }
                None => {
                    self.issues.push(GraphIssue::MissingOutput(name.clone()));
                    None
                }
            };
            if let Some(id) = id {
                self.declare_type(&mut g, id, &info);
                g.outputs.push((id, info));
            }
        }

        for info in value_info {
            let id = info.name.as_deref().and_then(|n| g.value_by_name(n));
            if let Some(id) = id {
                self.declare_type(&mut g, id, &info);
            }
            g.value_info.push((id, info));
        }

        if let Err(cycle) = g.topo_order() {
            self.issues.push(GraphIssue::Cycle(cycle.iter().map(|n| g.node_label(*n)).collect()));
        }
        g.next_order = g.next_order.max(pending.len() as u64 + g.values_raw().len() as u64);
        captured.sort();
        captured.dedup();
        Ok((g, captured))
    }

    /// Defines a value, reporting a second definition of the same name.
    fn define(&mut self, g: &mut Graph, definer: &mut HashMap<String, String>, name: &str, what: &str, def: ValueDef) -> ValueId {
        if let Some(first) = definer.get(name) {
            self.issues.push(GraphIssue::DuplicateName { name: name.to_string(), first: first.clone(), second: what.to_string() });
        } else if !name.is_empty() {
            definer.insert(name.to_string(), what.to_string());
        }
        g.push_value(name, def)
    }

    fn resolve(
        &mut self,
        g: &mut Graph,
        name: &str,
        outer: &dyn Fn(&str) -> bool,
        captured: &mut Vec<String>,
        node: &str,
        op: &str,
    ) -> Option<ValueId> {
        if let Some(id) = g.value_by_name(name) {
            return Some(id);
        }
        if outer(name) {
            captured.push(name.to_string());
            return Some(g.push_value(name, ValueDef::Outer));
        }
        self.issues.push(GraphIssue::Dangling { node: node.to_string(), op_type: op.to_string(), tensor: name.to_string() });
        None
    }

    /// Records the declared element type and shape of a value (constants keep their tensor's).
    fn declare_type(&mut self, g: &mut Graph, id: ValueId, info: &ValueInfoProto) {
        let (code, shape) = tensor_type_parts(info.r#type.as_ref());
        let name = info.name.clone().unwrap_or_default();
        let v = g.value_mut(id);
        if v.constant().is_some() {
            return;
        }
        match code {
            Some(0) | None => {}
            Some(code) => match DataType::from_onnx(code) {
                Some(dt) => v.dtype = Some(dt),
                None => self.issues.push(GraphIssue::UnknownValueDtype { value: name, code }),
            },
        }
        if shape.is_some() && v.shape.is_none() {
            v.shape = shape;
        }
    }

    /// Checks a tensor proto and loads its external data; reports problems and returns `Err(())`.
    fn tensor(&mut self, t: TensorProto) -> Result<Tensor, ()> {
        let name = t.name.clone().unwrap_or_default();
        let external = t.data_location == Some(crate::onnx::tensor_proto::DataLocation::External as i32);
        let report = |issues: &mut Vec<GraphIssue>, error| issues.push(GraphIssue::BadTensor { tensor: name.clone(), error });
        let tensor = Tensor::from_proto(t).map_err(|e| report(&mut self.issues, e))?;
        if !external {
            return Ok(tensor);
        }
        match self.external.read(&tensor) {
            Ok(data) => tensor.with_external_data(data).map_err(|e| report(&mut self.issues, e)),
            Err(message) => {
                let location = tensor.external_entry("location").unwrap_or("").to_string();
                self.issues.push(GraphIssue::Other(format!("tensor '{name}': external data file '{location}': {message}")));
                Err(())
            }
        }
    }

    /// The tensor a `Constant` node defines, with the data taken out of `node` (the IR tensor is
    /// the one copy). `None` for forms kept as an operation (a `sparse_value` not in the form
    /// whittle writes).
    fn constant_node_tensor(&mut self, node: &mut NodeProto) -> Option<Tensor> {
        let [attr] = node.attribute.as_mut_slice() else { return None };
        let out = node.output[0].clone();
        let dims_of = |n: usize| vec![n as i64];
        let tensor = match attr.name.as_deref()? {
            "value" => {
                let t = attr.t.take()?;
                match self.tensor(t.clone()) {
                    Ok(tensor) => tensor,
                    Err(()) => {
                        attr.t = Some(t);
                        return None;
                    }
                }
            }
            "value_float" => Tensor::from_raw(&out, DataType::Float, &[], attr.f?.to_le_bytes().to_vec()),
            "value_floats" => Tensor::from_f32(&out, &dims_of(attr.floats.len()), &attr.floats),
            "value_int" => Tensor::from_i64(&out, &[], &[attr.i?]),
            "value_ints" => Tensor::from_i64(&out, &dims_of(attr.ints.len()), &attr.ints),
            "value_string" => {
                let proto =
                    TensorProto { data_type: Some(DataType::String.to_onnx()), string_data: vec![attr.s.clone()?], ..Default::default() };
                Tensor::from_proto(proto).ok()?
            }
            "value_strings" => {
                let proto = TensorProto {
                    data_type: Some(DataType::String.to_onnx()),
                    dims: dims_of(attr.strings.len()),
                    string_data: attr.strings.clone(),
                    ..Default::default()
                };
                Tensor::from_proto(proto).ok()?
            }
            // Sparse data in whittle's canonical form (named like the output) is held dense and
            // written back the same; any other form stays an operation, byte for byte.
            "sparse_value" => {
                let tensor = attr.sparse_tensor.as_ref().and_then(crate::sparse::is_canonical).filter(|t| t.name() == out)?;
                attr.sparse_tensor = None;
                tensor
            }
            _ => return None,
        };
        Some(tensor)
    }
}

/// The tensor of `ConstantOfShape`: `value` (one element, default f32 0) repeated over `dims`.
fn splat(value: Option<&TensorProto>, dims: &[i64], name: &str) -> Option<Tensor> {
    let (dtype, one) = match value {
        Some(t) => {
            let t = Tensor::from_proto(t.clone()).ok()?;
            if t.numel() != 1 {
                return None;
            }
            (t.dtype(), t.raw_bytes().ok()?.into_owned())
        }
        None => (DataType::Float, 0f32.to_le_bytes().to_vec()),
    };
    if dtype.bit_width()? < 8 {
        return None;
    }
    let n = crate::tensor::element_count(dims).ok()? as usize;
    Some(Tensor::from_raw(name, dtype, dims, one.repeat(n)))
}

fn is_default_op(node: &NodeProto, op: &str) -> bool {
    node.op_type.as_deref() == Some(op) && matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"))
}

/// Reads external data files, each mapped once and shared by all tensors stored in it.
struct ExternalLoader {
    base: Option<PathBuf>,
    files: HashMap<String, Bytes>,
}

impl ExternalLoader {
    fn new(base: Option<&Path>) -> ExternalLoader {
        ExternalLoader { base: base.map(Path::to_path_buf), files: HashMap::new() }
    }

    fn read(&mut self, t: &Tensor) -> Result<Bytes, String> {
        let base = self.base.as_ref().ok_or("the model was not read from a file, so its external data cannot be found")?;
        let location = t.external_entry("location").ok_or("no 'location' entry")?;
        let rel = Path::new(location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err("the location must be a relative path inside the model's folder".into());
        }
        let parse = |key: &str| -> Result<Option<u64>, String> {
            t.external_entry(key).map(|s| s.parse::<u64>().map_err(|_| format!("bad '{key}' value '{s}'"))).transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?;
        if !self.files.contains_key(location) {
            let path = base.join(rel);
            // Symbolic links may not lead out of the model's folder (as onnx and onnxruntime
            // refuse), and only regular files are read (a FIFO would block forever).
            let real = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
            let folder = base.canonicalize().map_err(|e| format!("{}: {e}", base.display()))?;
            if !real.starts_with(&folder) {
                return Err(format!("{} leads outside the model's folder (to {}): refused", path.display(), real.display()));
            }
            if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
                return Err(format!("{} is not a regular file", path.display()));
            }
            let file = std::fs::File::open(&real).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: read-only mapping of a file we do not modify.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
            self.files.insert(location.to_string(), Bytes::from_owner(map));
        }
        let data = &self.files[location];
        let end = match length {
            Some(len) => offset.checked_add(len).ok_or("offset + length overflows")?,
            None => data.len() as u64,
        };
        if offset > data.len() as u64 || end > data.len() as u64 {
            return Err(format!("needs bytes {offset}..{end} but the file has {}", data.len()));
        }
        Ok(data.slice(offset as usize..end as usize))
    }
}

impl Graph {
    /// Turns `ConstantOfShape(constant shape)` into a constant value whose file form stays the
    /// one compact node (its data is not stored, whatever its size, up to 2^24 elements).
    /// Returns whether it did.
    pub fn constant_of_shape_as_constant(&mut self, id: NodeId) -> bool {
        let Some(node) = self.node(id) else { return false };
        if !node.is("ConstantOfShape") || node.outputs().len() != 1 || !node.captures().is_empty() {
            return false;
        }
        let (Some(shape_in), Some(out)) = (node.input(0), node.output(0)) else { return false };
        let Some(dims) = self.constant(shape_in).and_then(|t| t.to_i64().ok()) else { return false };
        if dims.iter().any(|&d| d < 0) || crate::tensor::element_count(&dims).map_or(true, |n| n > MAX_SPLAT_ELEMENTS) {
            return false;
        }
        let value_attr = node.attr_tensor("value").cloned();
        let Some(tensor) = splat(value_attr.as_ref(), &dims, self.value(out).name.as_str()) else { return false };
        let Some(removed) = self.remove_node_keep_outputs(id) else { return false };
        let mut proto = removed.residual.clone();
        proto.attribute = removed.attributes.into_iter().map(|a| a.proto).collect();
        let origin = ConstOrigin::Node { proto, inputs: vec![shape_in], order: removed.order, modified: false };
        self.make_constant(out, Constant { tensor, origin });
        true
    }

    /// Removes a node but keeps its output values (their definition is replaced by the caller).
    pub(crate) fn remove_node_keep_outputs(&mut self, id: NodeId) -> Option<crate::ir::Node> {
        let n = self.node(id)?.inputs().len();
        for slot in 0..n {
            self.set_input(id, slot, None);
        }
        let outs: Vec<ValueId> = self.node(id)?.outputs().iter().flatten().copied().collect();
        // Detach readers' edges by re-linking them once the definition changes.
        let uses: Vec<Vec<(NodeId, usize)>> = outs.iter().map(|v| self.value(*v).uses().to_vec()).collect();
        for (v, us) in outs.iter().zip(&uses) {
            for &(node, slot) in us {
                if slot != crate::ir::CAPTURE_SLOT {
                    self.set_input(node, slot, None);
                }
            }
            self.value_mut(*v).def = ValueDef::Undefined;
        }
        let node = self.remove_node_raw(id);
        for (v, us) in outs.iter().zip(uses) {
            for (node, slot) in us {
                if slot != crate::ir::CAPTURE_SLOT {
                    self.set_input(node, slot, Some(*v));
                }
            }
        }
        node
    }

    /// Turns a value into a constant (it must have no producing node).
    pub(crate) fn make_constant(&mut self, id: ValueId, c: Constant) {
        let v = self.value_mut(id);
        v.dtype = Some(c.tensor.dtype());
        v.shape = Some(Shape::from_dims(c.tensor.dims()));
        v.def = ValueDef::Constant(Box::new(c));
    }
}
