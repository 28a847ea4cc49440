//! The graph under construction for the ONNX export: nodes, initializers and fresh names
//! ([`Builder`]), a layer's tensors by key ([`Tensors`]), gate-block reordering and typed graph
//! inputs and outputs.

use crate::error::ExportError;
use crate::layout::TorchTensor;
use crate::onnx::proto::{
    AttributeProto, Dimension, NodeProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto, attribute_type, data_type,
};
use std::collections::HashMap;

/// An attribute value.
pub(super) enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
    Str(&'static str),
    Strs(Vec<&'static str>),
}

/// A graph under construction: nodes in order, initializers, and a counter for fresh names.
pub(super) struct Builder {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) initializers: Vec<TensorProto>,
    pub(super) next: usize,
    /// Whether recurrent states are graph inputs and outputs ([`crate::onnx::State::Carried`]).
    pub(super) carried: bool,
    /// State inputs and outputs, in layer order.
    pub(super) state_inputs: Vec<ValueInfoProto>,
    pub(super) state_outputs: Vec<ValueInfoProto>,
}

impl Builder {
    pub(super) fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    pub(super) fn init_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    pub(super) fn init_i64(&mut self, stem: &str, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Appends `op(inputs) -> one fresh output` and returns the output's name.
    pub(super) fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.op_into(op, inputs, vec![out.clone()], attrs);
        out
    }

    /// Appends `op(inputs) -> outputs` (named by the caller).
    pub(super) fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: Vec<String>,
        attrs: Vec<(&'static str, Attr)>,
    ) {
        let name = self.fresh(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name,
            op_type: op.to_string(),
            attribute: attrs
                .into_iter()
                .map(|(name, a)| {
                    let mut p = AttributeProto {
                        name: name.to_string(),
                        ..AttributeProto::default()
                    };
                    match a {
                        Attr::Float(f) => {
                            p.f = f;
                            p.r#type = attribute_type::FLOAT;
                        }
                        Attr::Int(i) => {
                            p.i = i;
                            p.r#type = attribute_type::INT;
                        }
                        Attr::Ints(v) => {
                            p.ints = v;
                            p.r#type = attribute_type::INTS;
                        }
                        Attr::Str(s) => {
                            p.s = s.as_bytes().to_vec();
                            p.r#type = attribute_type::STRING;
                        }
                        Attr::Strs(v) => {
                            p.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
                            p.r#type = attribute_type::STRINGS;
                        }
                    }
                    p
                })
                .collect(),
        });
    }

    pub(super) fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// `x · W + b` over the last axis, with `W` `[in, out]` (ringtrain's `Linear` layout).
    pub(super) fn linear(
        &mut self,
        x: &str,
        w: (&str, &[usize], &[f32]),
        b: (&str, &[f32]),
    ) -> String {
        let w = self.init_f32(w.0, w.1, w.2);
        let b = self.init_f32(b.0, &[b.1.len()], b.1);
        let y = self.op("MatMul", &[x, &w], Vec::new());
        self.op("Add", &[&y, &b], Vec::new())
    }

    /// `x[index]` along `axis`, that axis removed.
    pub(super) fn pick(&mut self, x: &str, index: i64, axis: i64) -> String {
        let i = self.init_i64("index", &[], &[index]);
        self.op("Gather", &[x, &i], vec![("axis", Attr::Int(axis))])
    }

    /// `x[:, start..end]` of a 2-D `x`.
    pub(super) fn columns(&mut self, x: &str, start: usize, end: usize) -> String {
        let s = self.init_i64("start", &[1], &[start as i64]);
        let e = self.init_i64("end", &[1], &[end as i64]);
        let a = self.init_i64("axes", &[1], &[1]);
        self.op("Slice", &[x, &s, &e, &a], Vec::new())
    }
}

/// The file-layout values of each of a layer's tensors, by key.
pub(super) struct Tensors<'a> {
    pub(super) by_key: HashMap<&'a str, &'a TorchTensor>,
    pub(super) params: &'a [f32],
    pub(super) layer: String,
}

impl Tensors<'_> {
    pub(super) fn get(&self, key: &str) -> Result<&TorchTensor, ExportError> {
        self.by_key
            .get(key)
            .copied()
            .ok_or_else(|| ExportError::Onnx {
                layer: self.layer.clone(),
                reason: format!("tensor {key:?} is missing from the model's layout"),
            })
    }

    /// The tensor in ringtrain's orientation (a `Linear` weight `[in, out]`).
    pub(super) fn ringtrain(&self, key: &str) -> Result<(Vec<usize>, &[f32]), ExportError> {
        let t = self.get(key)?;
        Ok((t.shape.clone(), &self.params[t.range.clone()]))
    }

    /// The tensor in PyTorch's orientation (a recurrent matrix `[G·H, in]`).
    pub(super) fn torch(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>), ExportError> {
        let t = self.get(key)?;
        Ok((t.file_shape(), crate::export::file_values(t, self.params)))
    }
}

/// `values` (`rows` rows of equal width, in `blocks` equal row blocks) with the row blocks
/// in the order `order` (`order[i]` = the source block of output block `i`).
pub(super) fn reorder_blocks(values: &[f32], blocks: usize, order: &[usize]) -> Vec<f32> {
    let block = values.len() / blocks.max(1);
    order
        .iter()
        .flat_map(|&b| values[b * block..(b + 1) * block].iter().copied())
        .collect()
}

/// A typed graph input or output with named dynamic dimensions.
pub(super) fn value_info(
    name: &str,
    elem_type: i32,
    dims: &[Result<usize, &str>],
    doc: &str,
) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(n) => Dimension {
                                dim_value: Some(*n as i64),
                                dim_param: None,
                            },
                            Err(p) => Dimension {
                                dim_value: None,
                                dim_param: Some((*p).to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: doc.to_string(),
    }
}
