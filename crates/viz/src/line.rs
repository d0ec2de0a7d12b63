//! Line charts with several series (training curves, per-layer distances).

use std::fmt::Write;

use crate::svg::{self, Frame};

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Shaded x interval with a label (e.g. ShifCon's chosen layer band).
    pub band: Option<(f64, f64, String)>,
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let names: Vec<String> = self.series.iter().map(|s| s.name.clone()).collect();
        let width = svg::title_width(&self.title).max(640.0);
        let height = 380.0 + svg::legend_rows(&names, width - 100.0).saturating_sub(1) as f64 * svg::LEGEND_ROW;
        let frame = Frame { left: 70.0, top: 36.0, width: width - 100.0, height: 270.0 };
        let finite = self.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in finite {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if !x_lo.is_finite() {
            (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
        }
        if x_hi <= x_lo {
            x_hi = x_lo + 1.0;
        }
        let pad = ((y_hi - y_lo) * 0.05).max(1e-9);
        let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
        let mut s = svg::open(width, height, &self.title);
        let fx = |x: f64| frame.x((x - x_lo) / (x_hi - x_lo));
        let fy = |y: f64| frame.y((y - y_lo) / (y_hi - y_lo));
        if let Some((a, b, label)) = &self.band {
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{}" fill="#E69F00" fill-opacity="0.15"/><text x="{:.1}" y="{}" text-anchor="middle" fill="#a06a00">{}</text>"##,
                fx(*a),
                frame.top,
                (fx(*b) - fx(*a)).max(1.0),
                frame.height,
                (fx(*a) + fx(*b)) / 2.0,
                frame.top + 14.0,
                svg::escape(label)
            );
        }
        svg::y_axis(&mut s, frame, y_lo, y_hi, &self.y_label);
        for t in svg::ticks(x_lo, x_hi, 8) {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                fx(t),
                frame.top + frame.height + 16.0,
                svg::format_tick(t)
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{}" x2="{}" y1="{b}" y2="{b}" stroke="#333"/><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
            frame.left,
            frame.left + frame.width,
            frame.left + frame.width / 2.0,
            frame.top + frame.height + 34.0,
            svg::escape(&self.x_label),
            b = frame.top + frame.height
        );
        for (i, series) in self.series.iter().enumerate() {
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", fx(x), fy(y)))
                .collect();
            if path.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
                svg::colour(i),
                path.join(" "),
                svg::escape(&series.name)
            );
        }
        svg::legend(&mut s, frame.left, frame.top + frame.height + 58.0, frame.width, &names);
        svg::close(s)
    }
}
