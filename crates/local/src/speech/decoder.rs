//! Whisper's text decoder with its keys and values kept between steps. candle's own decoder
//! keeps only the encoder side, so each new token ran the whole sequence again (prompt
//! included: 60 and more positions per token); here a step runs only the tokens it adds.
//! Same weights and same arithmetic as `candle_transformers::models::whisper::model`.

use candle_core::{IndexOp, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        1e-5,
    ))
}

/// Keys and values of the positions seen so far, split into heads as attention reads them:
/// keys scaled and transposed (batch, head, width, position), values (batch, head, position,
/// width). Laid out once when computed, not again for every token.
struct Cache {
    keys: Tensor,
    values: Tensor,
}

struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    heads: usize,
    /// Each head's share of the scaling of query-key products (Whisper scales both sides).
    scale: f64,
    cache: Option<Cache>,
}

impl Attention {
    fn load(width: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear(width, width, vb.pp("q_proj"))?,
            key: candle_nn::linear_no_bias(width, width, vb.pp("k_proj"))?,
            value: candle_nn::linear(width, width, vb.pp("v_proj"))?,
            out: candle_nn::linear(width, width, vb.pp("out_proj"))?,
            heads,
            scale: ((width / heads) as f64).powf(-0.25),
            cache: None,
        })
    }

    /// (batch, position, width) as (batch, head, position, head width).
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, positions, width) = x.dims3()?;
        x.reshape((batch, positions, self.heads, width / self.heads))?
            .transpose(1, 2)
    }

    fn keys_and_values(&self, x: &Tensor) -> Result<Cache> {
        Ok(Cache {
            keys: (self.split(&self.key.forward(x)?)?.transpose(2, 3)? * self.scale)?
                .contiguous()?,
            values: self.split(&self.value.forward(x)?)?.contiguous()?,
        })
    }

    /// Attention over the encoder's output: its keys and values are computed once per window.
    fn attend_to(&mut self, features: &Tensor) -> Result<()> {
        self.cache = Some(self.keys_and_values(features)?);
        Ok(())
    }

    /// Self-attention of the new positions `x` over every position so far, theirs included.
    fn extend(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let new = self.keys_and_values(x)?;
        let cache = match self.cache.take() {
            Some(cache) => Cache {
                keys: Tensor::cat(&[&cache.keys, &new.keys], 3)?,
                values: Tensor::cat(&[&cache.values, &new.values], 2)?,
            },
            None => new,
        };
        let attended = self.attend(x, &cache, mask);
        self.cache = Some(cache);
        attended
    }

    fn cross(&self, x: &Tensor) -> Result<Tensor> {
        match &self.cache {
            Some(cache) => self.attend(x, cache, None),
            None => candle_core::bail!("cross-attention before the encoder's output was given"),
        }
    }

    fn attend(&self, x: &Tensor, cache: &Cache, mask: Option<&Tensor>) -> Result<Tensor> {
        let query = (self.split(&self.query.forward(x)?)? * self.scale)?;
        let mut weights = query.matmul(&cache.keys)?;
        if let Some(mask) = mask {
            weights = weights.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&weights)?;
        let attended = weights
            .matmul(&cache.values)?
            .transpose(1, 2)?
            .flatten_from(2)?;
        self.out.forward(&attended)
    }
}

struct Block {
    attention: Attention,
    attention_norm: LayerNorm,
    cross: Attention,
    cross_norm: LayerNorm,
    expand: Linear,
    contract: Linear,
    mlp_norm: LayerNorm,
}

impl Block {
    fn load(width: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attention: Attention::load(width, heads, vb.pp("self_attn"))?,
            attention_norm: layer_norm(width, vb.pp("self_attn_layer_norm"))?,
            cross: Attention::load(width, heads, vb.pp("encoder_attn"))?,
            cross_norm: layer_norm(width, vb.pp("encoder_attn_layer_norm"))?,
            expand: candle_nn::linear(width, 4 * width, vb.pp("fc1"))?,
            contract: candle_nn::linear(4 * width, width, vb.pp("fc2"))?,
            mlp_norm: layer_norm(width, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self
            .attention
            .extend(&self.attention_norm.forward(x)?, mask)?)?;
        let x = (&x + self.cross.cross(&self.cross_norm.forward(&x)?)?)?;
        let mlp = self
            .contract
            .forward(&self.expand.forward(&self.mlp_norm.forward(&x)?)?.gelu()?)?;
        x + mlp
    }
}

pub struct Decoder {
    token_embedding: Embedding,
    positions: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    /// Positions decoded since [`Decoder::start`].
    length: usize,
}

impl Decoder {
    /// The decoder of the model whose weights `vb` holds under `model.decoder`.
    pub fn load(vb: &VarBuilder, config: &Config) -> Result<Self> {
        let vb = vb.pp("model.decoder");
        let width = config.d_model;
        let blocks = (0..config.decoder_layers)
            .map(|i| {
                Block::load(
                    width,
                    config.decoder_attention_heads,
                    vb.pp(format!("layers.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: candle_nn::embedding(config.vocab_size, width, vb.pp("embed_tokens"))?,
            positions: vb.get(
                (config.max_target_positions, width),
                "embed_positions.weight",
            )?,
            blocks,
            norm: layer_norm(width, vb.pp("layer_norm"))?,
            length: 0,
        })
    }

    /// Forgets what was decoded and listens to `features`, the encoder's output for a window.
    pub fn start(&mut self, features: &Tensor) -> Result<()> {
        for block in &mut self.blocks {
            block.attention.cache = None;
            block.cross.attend_to(features)?;
        }
        self.length = 0;
        Ok(())
    }

    /// Runs `tokens`, which follow those already decoded, and returns their hidden states
    /// (batch 1, one row per token).
    pub fn extend(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let count = tokens.len();
        let device = self.positions.device().clone();
        let input = Tensor::new(tokens, &device)?.unsqueeze(0)?;
        let positions = self.positions.narrow(0, self.length, count)?;
        let mut x = self
            .token_embedding
            .forward(&input)?
            .broadcast_add(&positions)?;
        // A new token sees every earlier one; several new ones must not see those after them.
        let mask = if count > 1 {
            let seen = self.length;
            let values: Vec<f32> = (0..count)
                .flat_map(|i| {
                    (0..seen + count)
                        .map(move |j| if j > seen + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(values, (count, seen + count), &device)?)
        } else {
            None
        };
        for block in &mut self.blocks {
            x = block.forward(&x, mask.as_ref())?;
        }
        self.length += count;
        self.norm.forward(&x)
    }

    /// The scores of the next token after the position `hidden` holds (batch 1, one row).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let column = hidden.flatten_all()?.unsqueeze(1)?;
        self.token_embedding
            .embeddings()
            .matmul(&column)?
            .squeeze(1)
    }
}

/// The hidden state of `position` among those [`Decoder::extend`] returned.
pub fn row(hidden: &Tensor, position: usize) -> Result<Tensor> {
    hidden.i((..1, position..position + 1))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_transformers::models::whisper::model;

    use super::*;

    /// A Whisper of two layers and two heads (64 wide, as in every real size).
    fn config() -> Config {
        Config {
            num_mel_bins: 8,
            max_source_positions: 30,
            d_model: 128,
            encoder_attention_heads: 2,
            encoder_layers: 2,
            vocab_size: 40,
            max_target_positions: 24,
            decoder_attention_heads: 2,
            decoder_layers: 2,
            suppress_tokens: Vec::new(),
        }
    }

    /// The names and shapes of the weights candle's Whisper reads.
    #[derive(Default)]
    struct Shapes(Vec<(String, Vec<usize>)>);

    impl Shapes {
        fn add(&mut self, name: String, shape: &[usize]) {
            self.0.push((name, shape.to_vec()));
        }

        fn linear(&mut self, name: &str, inputs: usize, outputs: usize, bias: bool) {
            self.add(format!("{name}.weight"), &[outputs, inputs]);
            if bias {
                self.add(format!("{name}.bias"), &[outputs]);
            }
        }

        fn norm(&mut self, name: &str, width: usize) {
            self.add(format!("{name}.weight"), &[width]);
            self.add(format!("{name}.bias"), &[width]);
        }

        fn block(&mut self, name: &str, width: usize, cross: bool) {
            let mut attentions = vec!["self_attn"];
            if cross {
                attentions.push("encoder_attn");
            }
            for attention in attentions {
                for (part, bias) in [
                    ("q_proj", true),
                    ("k_proj", false),
                    ("v_proj", true),
                    ("out_proj", true),
                ] {
                    self.linear(&format!("{name}.{attention}.{part}"), width, width, bias);
                }
                self.norm(&format!("{name}.{attention}_layer_norm"), width);
            }
            self.linear(&format!("{name}.fc1"), width, 4 * width, true);
            self.linear(&format!("{name}.fc2"), 4 * width, width, true);
            self.norm(&format!("{name}.final_layer_norm"), width);
        }
    }

    fn random_weights(config: &Config) -> Result<HashMap<String, Tensor>> {
        let width = config.d_model;
        let mut shapes = Shapes::default();
        shapes.add(
            "model.encoder.conv1.weight".into(),
            &[width, config.num_mel_bins, 3],
        );
        shapes.add("model.encoder.conv1.bias".into(), &[width]);
        shapes.add("model.encoder.conv2.weight".into(), &[width, width, 3]);
        shapes.add("model.encoder.conv2.bias".into(), &[width]);
        for layer in 0..config.encoder_layers {
            shapes.block(&format!("model.encoder.layers.{layer}"), width, false);
        }
        shapes.norm("model.encoder.layer_norm", width);
        shapes.add(
            "model.decoder.embed_tokens.weight".into(),
            &[config.vocab_size, width],
        );
        shapes.add(
            "model.decoder.embed_positions.weight".into(),
            &[config.max_target_positions, width],
        );
        for layer in 0..config.decoder_layers {
            shapes.block(&format!("model.decoder.layers.{layer}"), width, true);
        }
        shapes.norm("model.decoder.layer_norm", width);
        shapes
            .0
            .into_iter()
            .map(|(name, shape)| Ok((name, Tensor::randn(0f32, 0.3, shape, &Device::Cpu)?)))
            .collect()
    }

    fn largest_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn decoding_token_by_token_gives_what_candles_decoder_gives_for_the_whole_sequence()
    -> Result<()> {
        let config = config();
        let vb = VarBuilder::from_tensors(random_weights(&config)?, DType::F32, &Device::Cpu);
        let mut reference = model::Whisper::load(&vb, config.clone())?;
        let mut decoder = Decoder::load(&vb, &config)?;
        let features = Tensor::randn(0f32, 1.0, (1, 15, config.d_model), &Device::Cpu)?;
        let tokens: [u32; 7] = [3, 17, 5, 5, 29, 1, 38];
        let whole = Tensor::new(&tokens[..], &Device::Cpu)?.unsqueeze(0)?;
        let expected = reference.decoder.forward(&whole, &features, true)?;

        // Twice: starting a window forgets the one before.
        for _ in 0..2 {
            decoder.start(&features)?;
            // The prompt at once, then a token at a time, as decoding goes.
            let mut rows = vec![decoder.extend(&tokens[..4])?];
            for token in &tokens[4..] {
                rows.push(decoder.extend(&[*token])?);
            }
            let hidden = Tensor::cat(&rows, 1)?;
            assert!(largest_difference(&hidden, &expected)? < 1e-4);

            let last = tokens.len() - 1;
            let expected_logits = reference
                .decoder
                .final_linear(&row(&expected, last)?)?
                .i(0)?
                .i(0)?;
            let logits = decoder.logits(&row(&hidden, last)?)?;
            assert_eq!(logits.dims(), [config.vocab_size]);
            assert!(largest_difference(&logits, &expected_logits)? < 1e-3);
        }
        Ok(())
    }
}
