//! Heatmaps (e.g. feature magnitude per layer × hidden dimension).

use std::fmt::Write;

use crate::svg;

#[derive(Debug, Clone, Default)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// `values[row][col]`; rows are drawn top to bottom.
    pub values: Vec<Vec<f64>>,
    pub row_labels: Vec<String>,
}

/// White → dark blue.
fn shade(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0))
}

impl Heatmap {
    pub fn to_svg(&self) -> String {
        let rows = self.values.len().max(1);
        let cols = self.values.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let cell_w = (900.0 / cols as f64).clamp(0.5, 24.0);
        let cell_h = (600.0 / rows as f64).clamp(4.0, 24.0);
        let (left, top) = (70.0, 40.0);
        let width = left + cols as f64 * cell_w + 30.0;
        let height = top + rows as f64 * cell_h + 50.0;
        let (lo, hi) = self
            .values
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let mut s = svg::open(width, height, &self.title);
        for (r, row) in self.values.iter().enumerate() {
            let y = top + r as f64 * cell_h;
            for (c, v) in row.iter().enumerate() {
                let fill = if v.is_finite() { shade((v - lo) / span) } else { "#f00".into() };
                let _ = write!(
                    s,
                    r#"<rect x="{:.2}" y="{y:.2}" width="{:.2}" height="{cell_h:.2}" fill="{fill}"/>"#,
                    left + c as f64 * cell_w,
                    cell_w + 0.05
                );
            }
            if let Some(label) = self.row_labels.get(r) {
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"#,
                    left - 4.0,
                    y + cell_h * 0.75,
                    svg::escape(label)
                );
            }
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            left + cols as f64 * cell_w / 2.0,
            height - 18.0,
            svg::escape(&self.x_label),
            top + rows as f64 * cell_h / 2.0,
            top + rows as f64 * cell_h / 2.0,
            svg::escape(&self.y_label)
        );
        svg::close(s)
    }
}
