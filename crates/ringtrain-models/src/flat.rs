//! Parameters and gradients as one flat `f32` buffer, laid out in [`Module::visit`] order — the
//! same on every replica whatever its `ParamId`s (ids are random per `init`), so all-reduce and
//! checkpoint layouts key on position, never on ids.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::error::ModelError;
use crate::model::Model;

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
