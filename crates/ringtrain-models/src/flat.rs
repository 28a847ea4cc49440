//! Parameters and gradients as one flat `f32` buffer, laid out in [`Module::visit`] order — the
//! same on every replica whatever its `ParamId`s (ids are random per `init`), so all-reduce and
//! checkpoint layouts key on position, never on ids.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::error::ModelError;
use crate::model::{Layer, Model};

/// Number of scalar parameters, i.e. the length of every flat buffer of this model.
pub fn param_count(model: &Model) -> usize {
    model.num_params()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // A float tensor always converts to f32 values; an empty Vec would only hide a dtype bug,
    // which the length check of the callers then reports.
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// All parameter values in visit order.
pub fn flatten_params(model: &Model) -> Vec<f32> {
    module_params(model)
}

/// [`flatten_params`] for any module (a single layer, say).
pub(crate) fn module_params<M: Module>(model: &M) -> Vec<f32> {
    struct V(Vec<f32>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(values(param.val()));
        }
    }
    let mut v = V(Vec::with_capacity(model.num_params()));
    model.visit(&mut v);
    v.0
}

/// Replaces every parameter value by the next `numel` values of `flat` (visit order), keeping
/// each parameter's id and gradient requirement.
///
/// # Errors
/// [`ModelError::ParamCount`] if `flat.len()` is not [`param_count`]; the model is then dropped.
pub fn load_params(model: Model, flat: &[f32]) -> Result<Model, ModelError> {
    let expected = param_count(&model);
    if flat.len() != expected {
        return Err(ModelError::ParamCount {
            expected,
            got: flat.len(),
        });
    }
    struct M<'a> {
        flat: &'a [f32],
        offset: usize,
    }
    impl ModuleMapper for M<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let n: usize = param.shape().num_elements();
            let chunk = &self.flat[self.offset..self.offset + n];
            self.offset += n;
            param.map(|t| {
                let require_grad = t.is_require_grad();
                let data = TensorData::new(chunk.to_vec(), t.shape());
                Tensor::from_data(data, &t.device()).set_require_grad(require_grad)
            })
        }
    }
    Ok(model.map(&mut M { flat, offset: 0 }))
}

/// All gradients in visit order, zeros for a parameter that got no gradient (e.g. one outside
/// this stage's graph).
pub fn flatten_grads(model: &Model, grads: &GradientsParams) -> Vec<f32> {
    module_grads(model, grads)
}

/// [`flatten_grads`] for any module.
pub(crate) fn module_grads<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    struct Collect<'a> {
        out: Vec<f32>,
        take: &'a GradientsParams,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.take.get::<D>(param.id) {
                Some(g) => self.out.extend(values(g)),
                None => {
                    let n = param.shape().num_elements();
                    self.out.extend(std::iter::repeat_n(0.0, n));
                }
            }
        }
    }
    let mut v = Collect {
        out: Vec::with_capacity(model.num_params()),
        take: grads,
    };
    model.visit(&mut v);
    v.out
}

/// Appends each direction's (w_ih, w_hh, b_ih, b_hh) in the fused layout's order.
fn push_fused(out: &mut Vec<f32>, dirs: Vec<(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)>) {
    let v2 = |t: Tensor<2>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    };
    let v1 = |t: Tensor<1>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    };
    for (w_ih, w_hh, b_ih, b_hh) in dirs {
        out.extend(v2(w_ih));
        out.extend(v2(w_hh));
        out.extend(v1(b_ih));
        out.extend(v1(b_hh));
    }
}

/// The model's parameters in the flat layout the same model would have with fused layers
/// ([`crate::flat::flatten_params`] order), whichever implementation its recurrent layers use.
pub fn flatten_params_fused_layout(model: &Model) -> Vec<f32> {
    let mut out = Vec::new();
    for layer in model.layers() {
        match layer {
            Layer::Reference(r) => push_fused(
                &mut out,
                r.fused_tensors(&|p: &Param<Tensor<2>>| p.val(), &|p: &Param<Tensor<1>>| {
                    p.val()
                }),
            ),
            other => out.extend(module_params(other)),
        }
    }
    out
}

/// The model's gradients in the fused flat layout ([`crate::flat::flatten_grads`] order),
/// whichever implementation its recurrent layers use; zeros where a parameter got none.
pub fn flatten_grads_fused_layout(model: &Model, grads: &GradientsParams) -> Vec<f32> {
    let mut out = Vec::new();
    for layer in model.layers() {
        match layer {
            Layer::Reference(r) => push_fused(&mut out, r.fused_grads(grads)),
            other => out.extend(module_grads(other, grads)),
        }
    }
    out
}
