//! Grouped bar charts (e.g. bits/char per language for several models).

use std::fmt::Write;

use crate::svg::{self, Frame};

/// One group on the x axis with one value per series.
#[derive(Debug, Clone)]
pub struct BarGroup {
    pub label: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub series: Vec<String>,
    pub groups: Vec<BarGroup>,
}

impl BarChart {
    pub fn to_svg(&self) -> String {
        let n_series = self.series.len().max(1);
        let width = (120.0 + self.groups.len() as f64 * (24.0 * n_series as f64 + 24.0)).max(420.0).max(svg::title_width(&self.title));
        let legend_rows = if self.series.len() > 1 { svg::legend_rows(&self.series, width - 90.0) } else { 0 };
        let height = 360.0 + legend_rows.saturating_sub(1) as f64 * svg::LEGEND_ROW;
        let frame = Frame { left: 70.0, top: 36.0, width: width - 90.0, height: 250.0 };
        let hi = self.groups.iter().flat_map(|g| g.values.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max) * 1.1;
        let hi = if hi > 0.0 { hi } else { 1.0 };
        let mut s = svg::open(width, height, &self.title);
        svg::y_axis(&mut s, frame, 0.0, hi, &self.y_label);
        let slot = frame.width / self.groups.len().max(1) as f64;
        let bar = (slot * 0.8) / n_series as f64;
        for (gi, group) in self.groups.iter().enumerate() {
            let x0 = frame.left + gi as f64 * slot + slot * 0.1;
            for (si, value) in group.values.iter().enumerate() {
                if !value.is_finite() {
                    continue;
                }
                let top = frame.y(value / hi);
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {value:.3}</title></rect>"#,
                    x0 + si as f64 * bar,
                    bar * 0.92,
                    frame.top + frame.height - top,
                    svg::colour(si),
                    svg::escape(self.series.get(si).map(String::as_str).unwrap_or(""))
                );
            }
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x0 + slot * 0.4,
                frame.top + frame.height + 16.0,
                svg::escape(&group.label)
            );
        }
        if self.series.len() > 1 {
            svg::legend(&mut s, frame.left, frame.top + frame.height + 54.0, frame.width, &self.series);
        }
        svg::close(s)
    }
}
