//! # rosetta-viz
//!
//! Charts rendered to standalone SVG strings with no dependencies, so the CLI writes the very
//! charts the web lab shows inline. Text uses the viewer's sans-serif font; nothing here
//! measures glyphs, so layouts leave generous margins. Grids with thousands of cells (heatmaps)
//! draw them as one embedded PNG instead of an element per cell.

mod bar;
mod heatmap;
mod line;
mod raster;
mod scatter;
mod svg;

pub use bar::{BarChart, BarGroup};
pub use heatmap::Heatmap;
pub use line::{LineChart, Series};
pub use scatter::{ScatterChart, ScatterGroup};
pub use svg::{PALETTE, stack_vertically};
