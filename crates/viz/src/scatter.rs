//! Scatter plots with groups (e.g. a 2-D projection of sentences coloured by language).

use std::fmt::Write;

use crate::svg::{self, Frame};

#[derive(Debug, Clone)]
pub struct ScatterGroup {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct ScatterChart {
    pub title: String,
    pub groups: Vec<ScatterGroup>,
}

impl ScatterChart {
    pub fn to_svg(&self) -> String {
        let names: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
        let width = svg::title_width(&self.title).max(520.0);
        let height = 480.0 + svg::legend_rows(&names, width - 60.0).saturating_sub(1) as f64 * svg::LEGEND_ROW;
        let frame = Frame { left: 30.0, top: 36.0, width: width - 60.0, height: 390.0 };
        let all = self.groups.iter().flat_map(|g| g.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in all {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if !(x_hi > x_lo) {
            (x_lo, x_hi) = (x_lo.min(0.0) - 1.0, x_hi.max(0.0) + 1.0);
        }
        if !(y_hi > y_lo) {
            (y_lo, y_hi) = (y_lo.min(0.0) - 1.0, y_hi.max(0.0) + 1.0);
        }
        let mut s = svg::open(width, height, &self.title);
        let _ = write!(
            s,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#ccc"/>"##,
            frame.left, frame.top, frame.width, frame.height
        );
        for (i, group) in self.groups.iter().enumerate() {
            for &(x, y) in group.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}" fill-opacity="0.75"/>"#,
                    frame.x((x - x_lo) / (x_hi - x_lo)),
                    frame.y((y - y_lo) / (y_hi - y_lo)),
                    svg::colour(i)
                );
            }
        }
        svg::legend(&mut s, frame.left, frame.top + frame.height + 38.0, frame.width, &names);
        svg::close(s)
    }
}
