//! The layout of a model's flat parameter buffer, by layer and by tensor: which slice of the
//! buffer each layer's tensors occupy ([`layer_params`], used to take layers for `init_from`),
//! and each tensor's key, shape and orientation in PyTorch's layout ([`torch_layout`], used by
//! the safetensors export and import; the names are documented in [`crate::export`]). The flat
//! buffer lays the layers out one after the other, each in its own module visit order.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use ringtrain_models::{Layer, Model};
use std::ops::Range;

/// One layer's parameters: its name, the shape of each tensor in visit order, and its
/// positions in the model's flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// The layer's name (`embedding`, `lstm0`, `head`, ...).
    pub name: String,
    /// Shapes of its tensors in visit order.
    pub shapes: Vec<Vec<usize>>,
    /// Its slice of the flat parameter buffer.
    pub range: Range<usize>,
}

/// The layers of `model` with their tensor shapes and flat ranges (the flat buffer lays the
/// layers out one after the other, each in its own visit order).
pub fn layer_params(model: &Model) -> Vec<LayerParams> {
    struct Shapes(Vec<Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut at = 0;
    model
        .layers()
        .iter()
        .map(|layer| {
            let mut shapes = Shapes(Vec::new());
            layer.visit(&mut shapes);
            let n: usize = shapes.0.iter().map(|s| s.iter().product::<usize>()).sum();
            let range = at..at + n;
            at += n;
            LayerParams {
                name: layer.name(),
                shapes: shapes.0,
                range,
            }
        })
        .collect()
}

/// One tensor of a model in the PyTorch layout: where it is in the flat buffer and what it is
/// called and shaped like in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// The ringtrain layer it belongs to (`lstm0`, `head`, ...).
    pub layer: String,
    /// Its key in the file (`rnn.weight_ih_l0`, `head.linear.weight`, ...).
    pub name: String,
    /// Its shape in ringtrain.
    pub shape: Vec<usize>,
    /// Whether the file holds the transpose of this 2-D tensor.
    pub transposed: bool,
    /// Its slice of the model's flat parameter buffer.
    pub range: Range<usize>,
}

impl TorchTensor {
    /// Its shape in the file.
    pub fn file_shape(&self) -> Vec<usize> {
        if self.transposed {
            self.shape.iter().rev().copied().collect()
        } else {
            self.shape.clone()
        }
    }
}

/// `(field or index, type of the module holding it)` for each module from the layer down.
type ModulePath = Vec<(String, String)>;

/// Records every float parameter with the path of modules it sits in.
struct Walk {
    path: ModulePath,
    /// Each parameter's path and shape, in visit order.
    found: Vec<(ModulePath, Vec<usize>)>,
}

impl ModuleVisitor for Walk {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.found
            .push((self.path.clone(), param.val().dims().to_vec()));
    }
}

/// The key of a recurrent layer's tensor at `path` (below the layer), or `None` when the path
/// is not `directions.{d}.{w_ih|w_hh|b_ih|b_hh}`.
fn recurrent_key(path: &[(String, String)], position: usize) -> Option<String> {
    let [(directions, _), (direction, _), (field, _)] = path else {
        return None;
    };
    if directions != "directions" {
        return None;
    }
    let suffix = match direction.as_str() {
        "0" => "",
        "1" => "_reverse",
        _ => return None,
    };
    let base = match field.as_str() {
        "w_ih" => "weight_ih",
        "w_hh" => "weight_hh",
        "b_ih" => "bias_ih",
        "b_hh" => "bias_hh",
        _ => return None,
    };
    Some(format!("rnn.{base}_l{position}{suffix}"))
}

/// Every parameter of `model` in flat-buffer order, with its PyTorch-layout key and shape.
pub fn torch_layout(model: &Model) -> Vec<TorchTensor> {
    let mut out = Vec::new();
    let mut at = 0;
    for layer in model.layers() {
        let name = layer.name();
        let mut walk = Walk {
            path: Vec::new(),
            found: Vec::new(),
        };
        layer.visit(&mut walk);
        let position = match layer {
            Layer::Recurrent(r) => Some(r.position),
            // burn-nn's reference modules (a test path no checkpoint is built with) keep burn's
            // names below.
            Layer::Reference(_)
            | Layer::Embedding(_)
            | Layer::Projection(_)
            | Layer::Conv(_)
            | Layer::Attention(_)
            | Layer::Head(_)
            | Layer::Decoder(_) => None,
        };
        for (path, shape) in walk.found {
            // The first segment is the `Layer` variant.
            let below = path.get(1..).unwrap_or(&[]);
            let n: usize = shape.iter().product();
            let key = position.and_then(|p| recurrent_key(below, p));
            let transposed = shape.len() == 2
                && match &key {
                    Some(_) => below.last().is_some_and(|(f, _)| f.starts_with("w_")),
                    None => below
                        .last()
                        .is_some_and(|(f, ty)| f == "weight" && ty == "Struct:Linear"),
                };
            let key = key.unwrap_or_else(|| {
                let fields: Vec<&str> = below.iter().map(|(f, _)| f.as_str()).collect();
                format!("{name}.{}", fields.join("."))
            });
            out.push(TorchTensor {
                layer: name.clone(),
                name: key,
                shape,
                transposed,
                range: at..at + n,
            });
            at += n;
        }
    }
    out
}
