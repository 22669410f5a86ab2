//! whittle's passes: the [`pass::Pass`] trait, the one [`registry`], and one module per pass,
//! named like the pass.

pub mod affine;
pub mod channel_groups;
pub mod driver;
pub mod linalg;
pub mod measure;
pub mod pass;
pub mod quant;
pub mod rank;
pub mod reconstruct;
pub mod registry;
pub mod rewrite;
pub mod sensitivity;

pub mod constant_folding;
pub mod cross_layer_equalization;
pub mod dead_code;
pub mod fold_batchnorm;
pub mod fold_channelwise;
pub mod initializers_as_constants;
pub mod low_rank;
pub mod opset_conversion;
pub mod prune_channels;
pub mod prune_magnitude;
pub mod quantize_dynamic;
pub mod quantize_static;
pub mod quantize_weights;
pub mod remove_noops;
pub mod separable_conv;
pub mod smooth_quant;
pub mod sparse_storage;
pub mod strip_names;

pub use pass::{Declined, Pass, PassContext, PassError, PassReport};
pub use registry::{PASSES, PassInfo, lookup};
