//! The geometry's charts, drawn once for the CLI (`rosetta geometry` writes them as files) and the
//! lab (the shift room puts the same SVG in the page).
//!
//! The band [L_to, L_bk) is the window of residual sites L_to..=L_bk−1 ([`Band`]); every chart
//! shades exactly those sites, each as the unit interval around its position on the x axis.

use rosetta_viz::{BarChart, BarGroup, LineChart, ScatterChart, ScatterGroup, Series};

use crate::geometry::{Band, Geometry, SiteGeometry};

fn targets(g: &Geometry) -> Vec<&String> {
    g.langs.iter().filter(|l| **l != g.english).collect()
}

/// The shaded x interval of the band: sites `to..=back-1`, each ±½ around its position.
pub fn band_span(band: &Band) -> (f64, f64) {
    (band.to as f64 - 0.5, band.back as f64 - 0.5)
}

fn band_marker(g: &Geometry) -> Option<(f64, f64, String)> {
    let (from, to) = band_span(&g.band);
    let share = g.band.stability.as_ref().map(|s| format!(", {:.0} % of resamples", 100.0 * s.frequency)).unwrap_or_default();
    Some((from, to, format!("band {}..{}{share}", g.band.to, g.band.back)))
}

/// Per site and target language: the covariance term (the band criterion, with its mean over
/// languages), and the shifted mean term held out beside the noise it is expected to carry.
/// The band is shaded.
pub fn distance_chart(g: &Geometry) -> String {
    let mut series = Vec::new();
    for lang in targets(g) {
        let along = |f: &dyn Fn(&crate::geometry::LanguageAtSite) -> f64| {
            g.sites.iter().filter_map(|s| s.langs.get(lang).map(|l| (s.site as f64, f(l)))).collect()
        };
        series.push(Series { name: format!("{lang} covariance term"), points: along(&|l| l.shifted.covariance) });
        series.push(Series { name: format!("{lang} shifted ‖Δμ‖ held out"), points: along(&|l| l.shifted.mean) });
        series.push(Series { name: format!("{lang} its expected noise"), points: along(&|l| l.shifted.mean_noise) });
    }
    series.push(Series {
        name: "band criterion (mean covariance term)".into(),
        points: g.sites.iter().map(|s| (s.site as f64, s.band_criterion)).collect(),
    });
    LineChart {
        title: format!("Subspace distance of shifted states to {} per residual site", g.english),
        x_label: "residual site (input of layer)".into(),
        y_label: "sqrt(Σ log² λ); ‖Δμ‖".into(),
        series,
        band: band_marker(g),
    }
    .to_svg()
}

/// How often each window won when the sentences were resampled (`None` without resampling).
pub fn band_stability_chart(g: &Geometry) -> Option<String> {
    let stability = g.band.stability.as_ref()?;
    Some(
        BarChart {
            title: format!(
                "Band under resampling ({} resamples of {} sentences{})",
                stability.resamples,
                g.sentences,
                if stability.uncertain { ": uncertain" } else { "" }
            ),
            y_label: "share of resamples".into(),
            series: vec!["wins".into()],
            groups: stability
                .wins
                .iter()
                .map(|w| BarGroup { label: format!("{}..{}", w.window[0], w.window[1]), values: vec![w.frequency] })
                .collect(),
        }
        .to_svg(),
    )
}

/// Cosines of parallel and mismatched sentence pairs, and translation retrieval, per site.
pub fn alignment_chart(g: &Geometry) -> String {
    let mut cos = Vec::new();
    let mut retrieval = Vec::new();
    for lang in targets(g) {
        let along = |f: &dyn Fn(&crate::geometry::LanguageAtSite) -> f64| {
            g.sites.iter().filter_map(|s| s.langs.get(lang).map(|l| (s.site as f64, f(l)))).collect()
        };
        cos.push(Series { name: format!("{lang} parallel"), points: along(&|l| l.parallel_cosine) });
        cos.push(Series { name: format!("{lang} mismatched"), points: along(&|l| l.mismatched_cosine) });
        retrieval.push(Series { name: lang.clone(), points: along(&|l| l.retrieval_top1) });
    }
    let cos = LineChart {
        title: format!("Cosine of sentence states with {} (raw)", g.english),
        x_label: "residual site".into(),
        y_label: "mean cosine".into(),
        series: cos,
        band: band_marker(g),
    };
    let retrieval = LineChart {
        title: format!("Translation retrieval from {} (centred states)", g.english),
        x_label: "residual site".into(),
        y_label: "top-1 accuracy".into(),
        series: retrieval,
        band: band_marker(g),
    };
    rosetta_viz::stack_vertically(&[cos.to_svg(), retrieval.to_svg()])
}

/// The PCA plane at `site`: every language as measured, plus `moved` (a language's sentences
/// under a shift of some strength) when given.
pub fn scatter_chart(site: &SiteGeometry, moved: Option<(&str, f32, &[[f32; 2]])>) -> String {
    let mut groups: Vec<ScatterGroup> = site
        .pca
        .iter()
        .map(|(lang, points)| ScatterGroup { name: lang.clone(), points: points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect() })
        .collect();
    if let Some((lang, strength, points)) = moved {
        groups.push(ScatterGroup {
            name: format!("{lang} shifted ×{strength:.2}"),
            points: points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect(),
        });
    }
    ScatterChart { title: format!("Site {}: sentence states, first two principal components", site.site), groups }.to_svg()
}

/// PCA planes at the first layer's output, the band's middle and the last layer, stacked.
pub fn pca_chart(g: &Geometry) -> String {
    let last = g.num_layers;
    let middle = (g.band.to + g.band.back) / 2;
    let charts: Vec<String> =
        [1.min(last), middle, last].into_iter().filter_map(|site| g.sites.get(site)).map(|s| scatter_chart(s, None)).collect();
    rosetta_viz::stack_vertically(&charts)
}
