//! Loading ONNX bytes into a tract plan, and running it.
//!
//! Every call into tract goes through [`guarded`]: tract returns errors for most bad models but
//! panics on some malformed graphs, and a panic must become an error naming the step.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ndarray::ArrayD;
use rayon::prelude::*;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::VerifyError;
use crate::data::{InputSet, InputShape};

/// One input of a loaded model: name, element type and the concrete shape it was fixed to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInput {
    pub name: String,
    /// tract's name for the element type, e.g. `F32`.
    #[serde(serialize_with = "serialize_datum_type")]
    pub datum_type: DatumType,
    pub shape: Vec<usize>,
}

fn serialize_datum_type<S: serde::Serializer>(dt: &DatumType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{dt:?}"))
}

/// An optimized tract plan with concrete input shapes, ready to run samples.
#[derive(Debug, Clone)]
pub struct Runnable {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<ModelInput>,
    output_names: Vec<String>,
    metadata: BTreeMap<String, String>,
}

/// tract's element type for one of whittle's (`None` for types tract does not run).
pub fn datum_type(dt: whittle_graph::DataType) -> Option<DatumType> {
    use whittle_graph::DataType as D;
    Some(match dt {
        D::Float => DatumType::F32,
        D::Double => DatumType::F64,
        D::Float16 => DatumType::F16,
        D::Int8 => DatumType::I8,
        D::Int16 => DatumType::I16,
        D::Int32 => DatumType::I32,
        D::Int64 => DatumType::I64,
        D::Uint8 => DatumType::U8,
        D::Uint16 => DatumType::U16,
        D::Uint32 => DatumType::U32,
        D::Uint64 => DatumType::U64,
        D::Bool => DatumType::Bool,
        _ => return None,
    })
}

/// Parses ONNX `bytes` with tract, fixes every input to the given concrete shape (batch axis
/// first) keeping the element type the model declares (f32 when it declares none), and builds the
/// optimized plan. Stale `value_info` and output shapes in the file are ignored.
///
/// Every model input needs a shape; a shape for a name that is not a model input is an error.
pub fn load_model(bytes: &[u8], input_shapes: &[InputShape]) -> Result<Runnable, VerifyError> {
    let onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_value_info(true);
    let mut model = guarded("parsing the ONNX model", || onnx.model_for_read(&mut &bytes[..]))?;

    let input_names =
        guarded("listing model inputs", || Ok(model.input_outlets()?.iter().map(|o| model.node(o.node).name.clone()).collect::<Vec<_>>()))?;
    if let Some((name, _)) = input_shapes.iter().find(|(n, _)| !input_names.contains(n)) {
        return Err(VerifyError::UnknownInput { name: name.clone(), model_inputs: input_names });
    }
    let mut inputs = Vec::with_capacity(input_names.len());
    for (ix, name) in input_names.iter().enumerate() {
        let Some((_, shape)) = input_shapes.iter().find(|(n, _)| n == name) else {
            return Err(VerifyError::MissingInputShape { name: name.clone() });
        };
        let declared = guarded("reading an input fact", || Ok(model.input_fact(ix)?.clone()))?;
        check_declared_shape(name, &declared, shape)?;
        let datum_type = declared.datum_type.concretize().unwrap_or(DatumType::F32);
        guarded("fixing an input fact", || model.set_input_fact(ix, InferenceFact::dt_shape(datum_type, shape.as_slice())))?;
        inputs.push(ModelInput { name: name.clone(), datum_type, shape: shape.clone() });
    }

    let (output_names, metadata) = guarded("reading outputs and metadata", || {
        let names = model
            .output_outlets()?
            .iter()
            .map(|&o| model.outlet_label(o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone()))
            .collect::<Vec<_>>();
        let metadata = model
            .properties
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("onnx.metadata_props.")?;
                let value = v.try_as_plain_ram().ok()?.to_scalar::<String>().ok()?.clone();
                Some((key.to_string(), value))
            })
            .collect::<BTreeMap<_, _>>();
        Ok((names, metadata))
    })?;

    let typed = guarded("analysing the model (shapes and types)", move || model.into_typed())?;
    let optimized = guarded("optimizing the model", move || typed.into_optimized())?;
    let plan = guarded("building the execution plan", move || optimized.into_runnable())?;
    Ok(Runnable { plan, inputs, output_names, metadata })
}

/// Fails early, with names, when the model declares a rank or a fixed dimension that `shape`
/// contradicts (tract's own message would come from deep inside analysis).
fn check_declared_shape(name: &str, declared: &InferenceFact, shape: &[usize]) -> Result<(), VerifyError> {
    let mismatch = || VerifyError::InputShape { input: name.to_string(), expected: format!("{:?}", declared.shape), found: shape.to_vec() };
    if let Some(rank) = declared.shape.rank().concretize()
        && usize::try_from(rank).ok() != Some(shape.len())
    {
        return Err(mismatch());
    }
    for (dim, &given) in declared.shape.dims().zip(shape) {
        if let Some(fixed) = dim.concretize().and_then(|d| d.to_i64().ok())
            && fixed >= 0
            && fixed as usize != given
        {
            return Err(mismatch());
        }
    }
    Ok(())
}

impl Runnable {
    /// The model inputs, in model order, with the shapes they were fixed to.
    pub fn inputs(&self) -> &[ModelInput] {
        &self.inputs
    }

    /// The model output names, in model order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// A model-level `metadata_props` value (e.g. `character` for PP-OCR rec models).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Runs one sample (inputs by name, each with its batch axis of 1) and returns every output
    /// converted to f32, in model order.
    pub fn run(&self, sample: &[(String, Tensor)]) -> Result<Vec<ArrayD<f32>>, VerifyError> {
        let outputs = self.run_typed(sample)?;
        outputs.into_iter().zip(&self.output_names).map(|(tensor, name)| to_f32(tensor, name)).collect()
    }

    /// Runs one sample and returns every output with the element type tract computed it in.
    pub fn run_typed(&self, sample: &[(String, Tensor)]) -> Result<Vec<Tensor>, VerifyError> {
        let inputs = self.prepare(sample)?;
        let outputs = guarded("running the model", || self.plan.run(inputs))?;
        Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
    }

    /// Orders and type-checks a sample for the plan. Inputs are matched by name. An element type
    /// different from the model's is converted when both are floats or both are integers (a
    /// float64 `.npy` for a float32 model); any other difference is an error.
    pub(crate) fn prepare(&self, sample: &[(String, Tensor)]) -> Result<TVec<TValue>, VerifyError> {
        self.inputs
            .iter()
            .map(|input| {
                let Some((_, tensor)) = sample.iter().find(|(n, _)| *n == input.name) else {
                    return Err(VerifyError::MissingInput {
                        input: input.name.clone(),
                        available: sample.iter().map(|(n, _)| n.clone()).collect(),
                    });
                };
                // A sample may leave out a leading batch axis of 1 (as data files store them).
                let reshaped;
                let tensor = if crate::data::batch_axis_left_out(&input.shape, tensor.shape()) {
                    reshaped = guarded("adding the batch axis", || tensor.clone().into_shape(&input.shape))?;
                    &reshaped
                } else {
                    tensor
                };
                if tensor.shape() != input.shape.as_slice() {
                    return Err(VerifyError::InputShape {
                        input: input.name.clone(),
                        expected: format!("{:?}", input.shape),
                        found: tensor.shape().to_vec(),
                    });
                }
                let (have, want) = (tensor.datum_type(), input.datum_type);
                if have == want {
                    return Ok(tensor.clone().into_tvalue());
                }
                let compatible = (have.is_float() && want.is_float()) || (have.is_integer() && want.is_integer());
                if !compatible {
                    return Err(VerifyError::InputDtype {
                        input: input.name.clone(),
                        expected: format!("{want:?}"),
                        found: format!("{have:?}"),
                    });
                }
                let cast = guarded("converting an input", || Ok(tensor.cast_to_dt(want)?.into_owned()))?;
                Ok(cast.into_tvalue())
            })
            .collect()
    }

    /// Runs already prepared inputs (used by latency measurement).
    pub(crate) fn run_prepared(&self, inputs: TVec<TValue>) -> Result<(), VerifyError> {
        guarded("running the model", || self.plan.run(inputs)).map(drop)
    }
}

/// Runs every sample of `data` (in parallel over samples, results in sample order) and returns
/// each sample's outputs, converted to f32.
pub fn run_all(model: &Runnable, data: &InputSet) -> Result<Vec<Vec<ArrayD<f32>>>, VerifyError> {
    (0..data.len())
        .into_par_iter()
        .map(|i| {
            let sample = data.sample(i)?;
            model.run(&sample).map_err(|e| VerifyError::Sample { index: i, error: Box::new(e) })
        })
        .collect()
}

fn to_f32(tensor: Tensor, output: &str) -> Result<ArrayD<f32>, VerifyError> {
    guarded(&format!("converting output `{output}` to f32"), || {
        if tensor.datum_type() == DatumType::F32 {
            tensor.into_plain_array::<f32>()
        } else {
            tensor.cast_to::<f32>()?.into_owned().into_plain_array::<f32>()
        }
    })
}

thread_local! {
    /// Set while this thread is inside [`guarded`]: a panic there is tract's, caught and
    /// reported as an error, and must not also print its message and backtrace.
    static IN_GUARDED_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics inside [`guarded`] and hands every
/// other panic to the hook that was there before.
fn silence_caught_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARDED_CALL.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

/// Runs a tract call, turning both its error and a panic into a [`VerifyError`] naming `what`.
/// The panic's message becomes the error's; nothing is printed.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T, VerifyError> {
    silence_caught_panics();
    let outer = IN_GUARDED_CALL.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARDED_CALL.with(|c| c.set(outer));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(VerifyError::Tract { what: what.to_string(), message: format!("{error:#}") }),
        Err(payload) => Err(VerifyError::TractPanic {
            what: what.to_string(),
            message: payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_turns_panics_and_errors_into_typed_errors() {
        let err = guarded::<()>("doing a thing", || panic!("boom {}", 42)).unwrap_err();
        match err {
            VerifyError::TractPanic { what, message } => {
                assert_eq!(what, "doing a thing");
                assert_eq!(message, "boom 42");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = guarded::<()>("parsing", || Err(TractError::msg("bad proto"))).unwrap_err();
        assert!(matches!(err, VerifyError::Tract { ref message, .. } if message == "bad proto"));
        assert_eq!(guarded("ok", || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        let err = load_model(b"definitely not onnx", &[]).unwrap_err();
        assert!(matches!(err, VerifyError::Tract { .. } | VerifyError::TractPanic { .. }), "{err}");
    }
}
