//! Heatmaps (e.g. feature magnitude per layer × hidden dimension).

use std::fmt::Write;

use crate::{raster, svg};

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
fn shade(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    [lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0)]
}

/// Non-finite cells stand out in red.
const NOT_FINITE: [u8; 3] = [255, 0, 0];

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
        // The cells: one pixel each in an image stretched over the grid (see `raster`); a short
        // row leaves white. A presentation attribute, not a `style`: the lab's CSP allows no
        // inline style.
        let mut pixels = vec![255u8; rows * cols * 3];
        for (r, row) in self.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let rgb = if v.is_finite() { shade((v - lo) / span) } else { NOT_FINITE };
                pixels[(r * cols + c) * 3..][..3].copy_from_slice(&rgb);
            }
        }
        let _ = write!(
            s,
            r#"<image x="{left}" y="{top}" width="{:.2}" height="{:.2}" preserveAspectRatio="none" image-rendering="pixelated" href="{}"/>"#,
            cols as f64 * cell_w,
            rows as f64 * cell_h,
            raster::png_data_url(cols, rows, &pixels)
        );
        for r in 0..self.values.len() {
            let y = top + r as f64 * cell_h;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_heatmap_is_one_image_with_its_row_labels() {
        let values: Vec<Vec<f64>> = (0..30).map(|r| (0..576).map(|c| ((r * c) % 17) as f64).collect()).collect();
        let svg = Heatmap {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            values,
            row_labels: (0..30).map(|l| l.to_string()).collect(),
        }
        .to_svg();
        assert_eq!(svg.matches("<image").count(), 1);
        assert_eq!(svg.matches("<rect").count(), 1, "only the background");
        assert!(svg.contains(">29</text>"));
        assert!(svg.len() < 120_000, "{} bytes", svg.len());
    }

    #[test]
    fn shades_run_from_white_to_dark_blue_and_non_finite_cells_are_red() {
        assert_eq!(shade(0.0), [255, 255, 255]);
        assert_eq!(shade(1.0), [8, 48, 107]);
        assert_eq!(NOT_FINITE, [255, 0, 0]);
    }
}
