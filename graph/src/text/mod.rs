//! The canonical text form of a model: what the graph means, not how the file stores it. Made for
//! people reading a model and for snapshot tests of graph transformations (`insta`), so that a
//! pass shows as a small diff ([`diff_text`]). `docs/text-form.md` describes it for users.
//!
//! ```
//! use whittle_graph::builder::{GraphBuilder, attr_ints};
//! use whittle_graph::text::{TextOptions, model_text};
//! use whittle_graph::{DataType, Tensor};
//! let mut b = GraphBuilder::new(13);
//! let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
//! let w = b.constant("w", Tensor::from_f32("w", &[4, 3, 3, 3], &[0.1; 108]));
//! let bias = b.constant("b", Tensor::from_f32("b", &[4], &[0.1, 0.2, 0.3, 0.4]));
//! let c = b.node("Conv", &[x, w, bias], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
//! let y = b.node("Relu", &[c], &["y"], vec![])[0];
//! b.output(y);
//! let text = model_text(&b.finish(), &TextOptions::default());
//! assert_eq!(text, r#"ir_version: 8
//! opset_import: ai.onnx=13
//! producer_name: "whittle-builder"
//!
//! graph main
//!   inputs:
//!     x: f32[1,3,8,8]
//!   outputs:
//!     y: f32[*]
//!   constants:
//!     b: f32[4] = [0.1,0.2,0.3,0.4]
//!     w: f32[4,3,3,3] = <hash dbef202f2cc65357>
//!   nodes:
//!     c = Conv(x, w, b) {pads=[1,1,1,1]}  # c
//!     y: f32[*] = Relu(c)  # y
//! "#);
//! ```
//!
//! Sections come in a fixed order: model header (IR version, opset imports sorted by domain,
//! producer, model metadata sorted by key), then the graph (inputs and outputs in declaration
//! order, outer values a subgraph reads, constants sorted by name whatever the file used for them,
//! nodes, value_info count), then functions and training info. Nodes come in a topological order
//! that depends on names only (see [`order`]); attributes are sorted by name; floats print in their
//! shortest round-trip form; big tensors as a hash or rounded statistics ([`TensorDigest`]);
//! subgraphs nested under their node. No index of the IR ever reaches the text. Empty sections are
//! left out. Doc strings and the storage details of the file (initializer vs `Constant` node,
//! raw vs typed data, external data, node order) are not printed.
//!
//! Stability: for a given whittle release the text of a model is a pure function of the model and
//! the options. Any change to the format is a breaking change, listed in the changelog, because it
//! invalidates users' snapshots.

mod literal;
mod order;

use std::collections::HashMap;

use crate::ir::{Attribute, Graph, Node, NodeId, ValueDef, ValueId};
use crate::model::Model;
use crate::onnx::ModelProto;
use crate::onnx::attribute_proto::AttributeType;

/// How tensors too big to print inline are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TensorDigest {
    /// A content hash of dtype, shape and data ([`crate::Tensor::content_hash`]): exact.
    #[default]
    Hash,
    /// Rounded statistics (min, max, mean, std, ~4 significant digits) for float tensors, a hash
    /// for the others; small float tensors print rounded too (marked `~`). For snapshots of
    /// computed weights, which must not break on last-bit differences.
    Stats,
}

/// Options of the text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextOptions {
    pub tensors: TensorDigest,
    /// Tensors with at most this many elements print their values (default 16).
    pub inline_limit: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions { tensors: TensorDigest::Hash, inline_limit: 16 }
    }
}

/// The text form of a whole model.
pub fn model_text(model: &Model, opts: &TextOptions) -> String {
    let mut p = Printer { opts, out: String::new() };
    p.model_header(&model.meta);
    p.out.push('\n');
    p.graph(&model.graph, 0, "");
    p.model_trailer(&model.meta);
    p.out
}

/// The text form of one graph (as it appears inside [`model_text`], without the model header).
pub fn graph_text(graph: &Graph, opts: &TextOptions) -> String {
    let mut p = Printer { opts, out: String::new() };
    p.graph(graph, 0, "");
    p.out
}

/// A unified diff (`diff -u`, 3 lines of context) between two texts; empty when they are equal.
pub fn diff_text(a: &str, b: &str, a_label: &str, b_label: &str) -> String {
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(a, b).unified_diff().context_radius(3).header(a_label, b_label).to_string()
}

struct Printer<'a> {
    opts: &'a TextOptions,
    out: String,
}

impl Printer<'_> {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// A section header and its items, one per line, one level deeper; nothing when empty.
    fn section(&mut self, depth: usize, title: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        self.line(depth, &format!("{title}:"));
        for item in items {
            self.line(depth + 1, item);
        }
    }

    // ----- model -----

    fn model_header(&mut self, meta: &ModelProto) {
        if let Some(v) = meta.ir_version {
            self.line(0, &format!("ir_version: {v}"));
        }
        let mut opsets: Vec<(String, i64)> = meta
            .opset_import
            .iter()
            .map(|o| {
                let domain = match o.domain.as_deref() {
                    None | Some("") => "ai.onnx",
                    Some(d) => d,
                };
                (literal::name(domain).into_owned(), o.version.unwrap_or(0))
            })
            .collect();
        opsets.sort();
        if !opsets.is_empty() {
            let list: Vec<String> = opsets.iter().map(|(d, v)| format!("{d}={v}")).collect();
            self.line(0, &format!("opset_import: {}", list.join(", ")));
        }
        let text_fields = [("producer_name", &meta.producer_name), ("producer_version", &meta.producer_version), ("domain", &meta.domain)];
        for (key, value) in text_fields {
            if let Some(v) = value {
                self.line(0, &format!("{key}: {}", literal::quoted(v.as_bytes())));
            }
        }
        if let Some(v) = meta.model_version {
            self.line(0, &format!("model_version: {v}"));
        }
        let mut props: Vec<(&str, &str)> =
            meta.metadata_props.iter().map(|p| (p.key.as_deref().unwrap_or(""), p.value.as_deref().unwrap_or(""))).collect();
        props.sort();
        let props: Vec<String> = props.iter().map(|(k, v)| format!("{}: {}", literal::name(k), literal::long_text(v))).collect();
        self.section(0, "metadata_props", &props);
    }

    fn model_trailer(&mut self, meta: &ModelProto) {
        let mut functions: Vec<String> = meta
            .functions
            .iter()
            .map(|f| {
                let name = format!("{}.{}", f.domain.as_deref().unwrap_or(""), f.name.as_deref().unwrap_or(""));
                match f.overload.as_deref() {
                    Some(o) if !o.is_empty() => format!("{}:{}", literal::name(&name), literal::name(o)),
                    _ => literal::name(&name).into_owned(),
                }
            })
            .collect();
        functions.sort_by(|a, b| order::natural_cmp(a, b));
        let training = meta.training_info.len();
        if functions.is_empty() && training == 0 {
            return;
        }
        self.out.push('\n');
        self.section(0, "functions", &functions);
        if training > 0 {
            self.line(0, &format!("training_info: {training}"));
        }
    }

    // ----- graphs -----

    /// A graph block: `{prefix}graph NAME` at `depth`, its sections one level deeper.
    fn graph(&mut self, g: &Graph, depth: usize, prefix: &str) {
        self.line(depth, &format!("{prefix}graph {}", literal::name(g.name())));
        let d = depth + 1;
        let inputs: Vec<String> = g.input_infos().iter().map(|(v, info)| self.input_line(g, *v, info)).collect();
        self.section(d, "inputs", &inputs);
        let outputs: Vec<String> = g
            .output_infos()
            .iter()
            .map(|(v, info)| format!("{}: {}", literal::name(&g.value(*v).name), declared_type(g, *v, info)))
            .collect();
        self.section(d, "outputs", &outputs);
        self.section(d, "captures", &captures(g));
        let constants = self.constants(g);
        self.section(d, "constants", &constants);
        self.nodes(g, d);
        if !g.value_infos().is_empty() {
            self.line(d, &format!("value_info: {}", g.value_infos().len()));
        }
    }

    /// `x: f32[N,3]`, or `x: f32[3] = default [..]` for an input with an initializer.
    fn input_line(&self, g: &Graph, v: ValueId, info: &crate::onnx::ValueInfoProto) -> String {
        let value = g.value(v);
        let head = format!("{}: {}", literal::name(&value.name), declared_type(g, v, info));
        match value.constant() {
            Some(c) => format!("{head} = default {}", literal::tensor_data(&c.tensor, self.opts)),
            None => head,
        }
    }

    /// `name: f32[2] = [..]` for every constant that is not also a graph input, sorted by name.
    fn constants(&self, g: &Graph) -> Vec<String> {
        let mut items: Vec<(&str, String)> = g
            .value_ids()
            .filter(|v| !g.is_graph_input(*v))
            .filter_map(|id| {
                let v = g.value(id);
                let (ty, data) = match &v.def {
                    ValueDef::Constant(c) => {
                        let ty = literal::type_of(&c.tensor);
                        let ty = if c.is_sparse() { format!("sparse {ty}") } else { ty };
                        (ty, literal::tensor_data(&c.tensor, self.opts))
                    }
                    ValueDef::Sparse => sparse_initializer(g, &v.name, self.opts)?,
                    _ => return None,
                };
                Some((v.name.as_str(), format!("{}: {ty} = {data}", literal::name(&v.name))))
            })
            .collect();
        items.sort_by(|a, b| order::natural_cmp(a.0, b.0).then_with(|| a.1.cmp(&b.1)));
        items.into_iter().map(|(_, line)| line).collect()
    }

    fn nodes(&mut self, g: &Graph, depth: usize) {
        let heads: HashMap<NodeId, String> =
            g.node_ids().into_iter().map(|id| (id, self.node_head(g, g.node(id).expect("listed node")))).collect();
        let order = order::node_order(g, &heads);
        if heads.is_empty() {
            return;
        }
        self.line(depth, "nodes:");
        for id in &order.sorted {
            self.node(g, *id, &heads[id], depth + 1);
        }
        if !order.cyclic.is_empty() {
            self.line(depth + 1, "# cycle: the nodes below read each other's outputs");
            for id in &order.cyclic {
                self.node(g, *id, &heads[id], depth + 1);
            }
        }
    }

    /// A node's line, then its subgraphs nested one level deeper (sorted by attribute name).
    fn node(&mut self, g: &Graph, id: NodeId, head: &str, depth: usize) {
        self.line(depth, head);
        let node = g.node(id).expect("listed node");
        for a in sorted_attributes(node) {
            let indexed = attr_type(a) == AttributeType::Graphs || a.subgraphs.len() > 1;
            for (i, sub) in a.subgraphs.iter().enumerate() {
                let label = literal::name(a.name());
                let prefix = if indexed { format!("{label}[{i}]: ") } else { format!("{label}: ") };
                self.graph(sub, depth + 1, &prefix);
            }
        }
    }

    /// `y: f32[1,4] = Op(a, b) {attr=1}  # node name`.
    fn node_head(&self, g: &Graph, n: &Node) -> String {
        let value_text = |v: &Option<ValueId>, typed: bool| match v {
            Some(v) if typed => typed_name(g, *v),
            Some(v) => literal::name(&g.value(*v).name).into_owned(),
            None => "\"\"".to_string(),
        };
        let outputs: Vec<String> = trim_absent(n.outputs()).iter().map(|v| value_text(v, true)).collect();
        let inputs: Vec<String> = trim_absent(n.inputs()).iter().map(|v| value_text(v, false)).collect();
        let mut s = String::new();
        if !outputs.is_empty() {
            s.push_str(&outputs.join(", "));
            s.push_str(" = ");
        }
        s.push_str(&op_name(n));
        s.push('(');
        s.push_str(&inputs.join(", "));
        s.push(')');
        let attrs: Vec<String> = sorted_attributes(n).into_iter().filter_map(|a| self.attribute(a)).collect();
        if !attrs.is_empty() {
            s.push_str(&format!(" {{{}}}", attrs.join(", ")));
        }
        if !n.name().is_empty() {
            s.push_str("  # ");
            s.push_str(&literal::name(n.name()));
        }
        s
    }

    /// `name=value` of an attribute; `None` for a graph attribute (printed as a nested block).
    fn attribute(&self, a: &Attribute) -> Option<String> {
        let p = &a.proto;
        let name = literal::name(a.name());
        if let Some(r) = p.ref_attr_name.as_deref() {
            return Some(format!("{name}=@{}", literal::name(r)));
        }
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let value = match attr_type(a) {
            AttributeType::Float => literal::float32(p.f.unwrap_or(0.0)),
            AttributeType::Int => p.i.unwrap_or(0).to_string(),
            AttributeType::String => literal::quoted(p.s.as_deref().unwrap_or_default()),
            AttributeType::Tensor => p.t.as_ref().map(|t| literal::tensor_proto(t, self.opts)).unwrap_or_else(|| "?".into()),
            AttributeType::SparseTensor => p.sparse_tensor.as_ref().map(|t| literal::sparse(t, self.opts)).unwrap_or_else(|| "?".into()),
            AttributeType::TypeProto => literal::type_proto(p.tp.as_ref()),
            AttributeType::Floats => list(p.floats.iter().map(|v| literal::float32(*v)).collect()),
            AttributeType::Ints => list(p.ints.iter().map(i64::to_string).collect()),
            AttributeType::Strings => list(p.strings.iter().map(|s| literal::quoted(s)).collect()),
            AttributeType::Tensors => list(p.tensors.iter().map(|t| literal::tensor_proto(t, self.opts)).collect()),
            AttributeType::SparseTensors => list(p.sparse_tensors.iter().map(|t| literal::sparse(t, self.opts)).collect()),
            AttributeType::TypeProtos => list(p.type_protos.iter().map(|t| literal::type_proto(Some(t))).collect()),
            AttributeType::Graph | AttributeType::Graphs if !a.subgraphs.is_empty() => return None,
            AttributeType::Graph | AttributeType::Graphs | AttributeType::Undefined => "?".into(),
        };
        Some(format!("{name}={value}"))
    }
}

/// The attribute's declared type, or the one its set fields imply (old files omit `type`).
fn attr_type(a: &Attribute) -> AttributeType {
    let declared = a.proto.r#type.and_then(|t| AttributeType::try_from(t).ok()).unwrap_or(AttributeType::Undefined);
    if declared != AttributeType::Undefined {
        return declared;
    }
    let p = &a.proto;
    let implied = [
        (p.f.is_some(), AttributeType::Float),
        (p.i.is_some(), AttributeType::Int),
        (p.s.is_some(), AttributeType::String),
        (p.t.is_some(), AttributeType::Tensor),
        (a.in_g, AttributeType::Graph),
        (p.sparse_tensor.is_some(), AttributeType::SparseTensor),
        (p.tp.is_some(), AttributeType::TypeProto),
        (!p.floats.is_empty(), AttributeType::Floats),
        (!p.ints.is_empty(), AttributeType::Ints),
        (!p.strings.is_empty(), AttributeType::Strings),
        (!p.tensors.is_empty(), AttributeType::Tensors),
        (!a.subgraphs.is_empty(), AttributeType::Graphs),
        (!p.sparse_tensors.is_empty(), AttributeType::SparseTensors),
        (!p.type_protos.is_empty(), AttributeType::TypeProtos),
    ];
    implied.into_iter().find(|(set, _)| *set).map(|(_, t)| t).unwrap_or(AttributeType::Undefined)
}

/// Attributes sorted by name (then by their printed value, for duplicated names).
fn sorted_attributes(n: &Node) -> Vec<&Attribute> {
    let mut attrs: Vec<&Attribute> = n.attributes.iter().collect();
    attrs.sort_by(|a, b| a.name().cmp(b.name()).then_with(|| format!("{:?}", a.proto).cmp(&format!("{:?}", b.proto))));
    attrs
}

/// `Op`, `domain.Op` outside the default domain, `Op:overload` with an overload.
fn op_name(n: &Node) -> String {
    let mut s = if n.domain().is_empty() { n.op_type().to_string() } else { format!("{}.{}", n.domain(), n.op_type()) };
    if let Some(o) = n.residual.overload.as_deref().filter(|o| !o.is_empty()) {
        s.push(':');
        s.push_str(o);
    }
    literal::name(&s).into_owned()
}

/// Inputs or outputs without the trailing omitted ones (they mean nothing).
fn trim_absent(values: &[Option<ValueId>]) -> &[Option<ValueId>] {
    let len = values.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    &values[..len]
}

/// `name: type` when the element type or shape is known, else `name`.
fn typed_name(g: &Graph, v: ValueId) -> String {
    let value = g.value(v);
    let name = literal::name(&value.name);
    if value.dtype.is_none() && value.shape.is_none() {
        return name.into_owned();
    }
    format!("{name}: {}", literal::tensor_type(value.dtype, value.shape.as_ref()))
}

/// The type of a graph input or output: what the IR knows of the tensor, or the declaration when
/// it is not a tensor (sequence, map, optional).
fn declared_type(g: &Graph, v: ValueId, info: &crate::onnx::ValueInfoProto) -> String {
    let value = g.value(v);
    if value.dtype.is_some() || value.shape.is_some() {
        return literal::tensor_type(value.dtype, value.shape.as_ref());
    }
    literal::type_proto(info.r#type.as_ref())
}

/// The outer-scope values a subgraph reads, sorted by name.
fn captures(g: &Graph) -> Vec<String> {
    let mut names: Vec<&str> = g.value_ids().filter(|v| g.value(*v).def == ValueDef::Outer).map(|v| g.value(v).name.as_str()).collect();
    names.sort_by(|a, b| order::natural_cmp(a, b));
    names.dedup();
    names.into_iter().map(|n| literal::name(n).into_owned()).collect()
}

/// A sparse initializer's text, from the graph's verbatim `sparse_initializer` list.
fn sparse_initializer(g: &Graph, name: &str, opts: &TextOptions) -> Option<(String, String)> {
    let s = g.residual.sparse_initializer.iter().find(|s| s.values.as_ref().and_then(|v| v.name.as_deref()) == Some(name))?;
    Some(literal::sparse_parts(s, opts))
}
