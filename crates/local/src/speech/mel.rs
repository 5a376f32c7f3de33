//! Whisper's mel filterbank: `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)` — Slaney's
//! mel scale and area normalisation — which the model was trained on. The wheel ships no
//! `mel_filters.npz`, so it is computed here once.

/// Hz → mel on Slaney's scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// `n_mels` triangular filters over the `n_fft / 2 + 1` FFT bins, row-major, as
/// `candle_transformers::models::whisper::audio::pcm_to_mel` takes them.
pub fn filters(sample_rate: usize, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let nyquist = sample_rate as f64 / 2.0;
    let fft_hz: Vec<f64> = (0..bins)
        .map(|bin| bin as f64 * nyquist / (bins - 1) as f64)
        .collect();
    let max_mel = hz_to_mel(nyquist);
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f32; n_mels * bins];
    for mel in 0..n_mels {
        let (left, centre, right) = (edges[mel], edges[mel + 1], edges[mel + 2]);
        let area_norm = 2.0 / (right - left);
        for (bin, hz) in fft_hz.iter().enumerate() {
            let rising = (hz - left) / (centre - left);
            let falling = (right - hz) / (right - centre);
            let weight = rising.min(falling).max(0.0);
            weights[mel * bins + bin] = (weight * area_norm) as f32;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_round_trips_and_is_linear_below_one_kilohertz() {
        for hz in [0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-9);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn whispers_filterbank_has_eighty_triangles_over_201_bins() {
        let filters = filters(16_000, 400, 80);
        assert_eq!(filters.len(), 80 * 201);
        // The first filter spans 0–74.5 Hz peaking at 37.2 Hz; bin 1 (40 Hz) is on its falling
        // edge: (74.48 − 40) / 37.24 × 2 / 74.48 = 0.02486.
        assert!((filters[1] - 0.024_862).abs() < 1e-4, "{}", filters[1]);
        assert!(filters[0].abs() < 1e-9);
        let last = &filters[79 * 201..];
        assert!(last.iter().any(|weight| *weight > 0.0));
        assert!(last[..150].iter().all(|weight| *weight == 0.0));
    }
}
