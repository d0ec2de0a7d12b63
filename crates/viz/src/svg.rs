//! SVG building blocks: escaping, axes, ticks, the palette.

use std::fmt::Write;

/// Colour-blind-friendly categorical palette (Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn open(width: f64, height: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    s
}

pub fn close(mut s: String) -> String {
    s.push_str("</svg>");
    s
}

/// Several standalone SVG documents stacked into one, top to bottom.
pub fn stack_vertically(svgs: &[String]) -> String {
    let size = |svg: &str, attr: &str| -> f64 {
        let key = format!(" {attr}=\"");
        svg.find(&key).and_then(|i| svg[i + key.len()..].split('"').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    let width = svgs.iter().map(|s| size(s, "width")).fold(0.0, f64::max);
    let height: f64 = svgs.iter().map(|s| size(s, "height")).sum();
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">"#);
    let mut y = 0.0;
    for svg in svgs {
        // A nested <svg> keeps each chart's own coordinate system.
        out.push_str(&svg.replacen("<svg ", &format!("<svg y=\"{y}\" "), 1));
        y += size(svg, "height");
    }
    out.push_str("</svg>");
    out
}

/// "Nice" tick values covering [lo, hi] (1-2-5 steps).
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(hi > lo) || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let start = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut t = start;
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

pub fn format_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

/// The plot area inside the margins.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Frame {
    pub fn x(&self, fraction: f64) -> f64 {
        self.left + fraction * self.width
    }

    pub fn y(&self, fraction: f64) -> f64 {
        self.top + (1.0 - fraction) * self.height
    }
}

/// Draws a y axis with ticks and a label, and horizontal grid lines.
pub fn y_axis(s: &mut String, frame: Frame, lo: f64, hi: f64, label: &str) {
    for t in ticks(lo, hi, 5) {
        let y = frame.y((t - lo) / (hi - lo));
        let _ = write!(
            s,
            r##"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            frame.left,
            frame.left + frame.width,
            frame.left - 6.0,
            y + 4.0,
            format_tick(t)
        );
    }
    let cx = frame.left - 48.0;
    let cy = frame.top + frame.height / 2.0;
    let _ = write!(
        s,
        r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{b}" stroke="#333"/><text x="{cx}" y="{cy}" transform="rotate(-90 {cx} {cy})" text-anchor="middle">{}</text>"##,
        escape(label),
        l = frame.left,
        t = frame.top,
        b = frame.top + frame.height
    );
}

/// Height of one legend row.
pub const LEGEND_ROW: f64 = 16.0;

fn legend_entry_width(name: &str) -> f64 {
    28.0 + 7.0 * name.chars().count() as f64
}

/// Each legend entry's row and offset when wrapped at `max_width`.
fn legend_layout(names: &[String], max_width: f64) -> Vec<(usize, f64)> {
    let (mut row, mut cursor) = (0, 0.0);
    names
        .iter()
        .map(|name| {
            let w = legend_entry_width(name);
            if cursor > 0.0 && cursor + w > max_width {
                (row, cursor) = (row + 1, 0.0);
            }
            let at = (row, cursor);
            cursor += w;
            at
        })
        .collect()
}

/// Rows a legend of `names` takes when wrapped at `max_width` (a chart adds the height).
pub fn legend_rows(names: &[String], max_width: f64) -> usize {
    legend_layout(names, max_width).last().map_or(0, |(row, _)| row + 1)
}

/// The width a chart needs for `title` on one line.
pub fn title_width(title: &str) -> f64 {
    40.0 + 8.5 * title.chars().count() as f64
}

/// A legend below the plot from (x, y), wrapped onto further rows at `max_width`.
pub fn legend(s: &mut String, x: f64, y: f64, max_width: f64, names: &[String]) {
    for (i, (name, (row, offset))) in names.iter().zip(legend_layout(names, max_width)).enumerate() {
        let (cx, cy) = (x + offset, y + row as f64 * LEGEND_ROW);
        let _ = write!(
            s,
            r#"<rect x="{cx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{cy}">{}</text>"#,
            cy - 10.0,
            colour(i),
            cx + 16.0,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legends_wrap_at_the_width() {
        let names: Vec<String> = ["alpha", "beta", "gamma", "delta"].iter().map(|s| s.to_string()).collect();
        assert_eq!(legend_rows(&names, 1000.0), 1);
        // Entries are 28 + 7·chars wide: 63 + 56 fit in 130, "gamma" starts row 2.
        assert_eq!(legend_rows(&names, 130.0), 2);
        assert_eq!(legend_rows(&[], 100.0), 0);
        let mut s = String::new();
        legend(&mut s, 10.0, 100.0, 130.0, &names);
        assert!(s.contains(r#"<text x="26" y="100">alpha</text>"#) && s.contains(r#"<text x="26" y="116">gamma</text>"#), "{s}");
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks(3.2, 47.0, 5);
        assert_eq!(t.first(), Some(&10.0));
        assert_eq!(t.last(), Some(&40.0));
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(12000.0), "1.2e4");
    }

    #[test]
    fn stacks_charts() {
        let a = format!("{}</svg>", open(100.0, 50.0, "a"));
        let b = format!("{}</svg>", open(80.0, 30.0, "b"));
        let both = stack_vertically(&[a, b]);
        assert!(both.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 80""#), "{both}");
        assert!(both.contains(r#"<svg y="50" xmlns"#));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
