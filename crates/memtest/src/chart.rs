//! An SVG chart of memory against requests, for reading a leak verdict by eye.
//!
//! A verdict is a number; the chart shows why. Memory sampled while the load runs
//! (RSS, say) is noisy and saw-toothed, so it is drawn as a thin line for context; the
//! heap read at quiet points between rounds is what the verdict rests on, so those are
//! dots; and the fitted trend is a straight line through them. Plotting against
//! requests rather than time keeps a slow round from looking like growth.
//!
//! The output is a self-contained SVG string: text is written as `<text>` elements,
//! so no font files are needed to render it, and it can be embedded in a report.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Bytes in a mebibyte: the chart's y axis is in MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// One series on the chart.
pub struct Series<'a> {
    /// The label shown in the legend.
    pub name: &'a str,
    /// The points: x = requests, y = bytes.
    pub points: &'a [(f64, f64)],
}

/// Draws memory (y, shown in MiB) against requests (x) as an SVG document:
/// `samples` are drawn as a thin line (memory sampled while running, e.g. RSS), `quiet`
/// as dots (heap at quiet points between rounds), and `trend` as a straight fitted line
/// y = intercept + slope*x over the x range of `quiet`. Title at the top; axes labelled
/// "requests" and "MiB".
///
/// `trend` is `(intercept, slope)` in bytes and bytes per request. Points with a
/// non-finite coordinate are left out. With no data at all the chart is drawn with
/// empty axes; a trend needs at least one quiet point to give it an x range.
///
/// # Errors
///
/// If plotters fails to lay out or write the chart.
pub fn memory_chart(
    title: &str,
    samples: &[Series<'_>],
    quiet: &[Series<'_>],
    trend: Option<(f64, f64)>,
) -> Result<String> {
    let samples = in_mib(samples);
    let quiet = in_mib(quiet);
    let trend_line = trend.and_then(|fit| trend_segment(&quiet, fit));

    let all_points = samples
        .iter()
        .chain(&quiet)
        .flat_map(|(_, points)| points.iter().copied())
        .chain(trend_line.iter().flatten().copied());
    let (x_range, y_range) = ranges(all_points);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        draw(&root, title, &samples, &quiet, trend_line, x_range, y_range)
            .map_err(|e| anyhow!("drawing the memory chart: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("writing the memory chart: {e}"))?;
    }
    Ok(svg)
}

type Points = Vec<(f64, f64)>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    samples: &[(&str, Points)],
    quiet: &[(&str, Points)],
    trend_line: Option<[(f64, f64); 2]>,
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 26))
        .margin(12)
        // Room for the last x tick label, which is centred on the right edge.
        .margin_right(36)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)?;
    let x_decimals = decimals_for(x_range.1 - x_range.0);
    let y_decimals = decimals_for(y_range.1 - y_range.0);
    chart
        .configure_mesh()
        .x_desc("requests")
        .y_desc("MiB")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x:.x_decimals$}"))
        .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
        .draw()?;

    // One palette index across both kinds of series, so every series has its own colour.
    let mut colours = (0..).map(|i| Palette99::pick(i).to_rgba());
    let mut labelled = false;

    for ((name, points), colour) in samples.iter().zip(&mut colours) {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(1),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        labelled = true;
    }
    for ((name, points), colour) in quiet.iter().zip(&mut colours) {
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&point| Circle::new(point, 4, colour.filled())),
            )?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        labelled = true;
    }
    if let Some(segment) = trend_line {
        chart
            .draw_series(LineSeries::new(segment, BLACK.stroke_width(2)))?
            .label("trend")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        labelled = true;
    }

    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// Each series as (name, points in MiB), without non-finite points.
fn in_mib<'a>(series: &[Series<'a>]) -> Vec<(&'a str, Points)> {
    series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (x, y / MIB))
                .collect();
            (s.name, points)
        })
        .collect()
}

/// The fitted line's two ends, in MiB, over the x range of the quiet points.
fn trend_segment(
    quiet: &[(&str, Points)],
    (intercept, slope): (f64, f64),
) -> Option<[(f64, f64); 2]> {
    let (low, high) = quiet
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(x, _)| x))
        .fold(None, |span: Option<(f64, f64)>, x| {
            Some(span.map_or((x, x), |(low, high)| (low.min(x), high.max(x))))
        })?;
    let at = |x: f64| (x, (intercept + slope * x) / MIB);
    let segment = [at(low), at(high)];
    segment
        .iter()
        .all(|(_, y)| y.is_finite())
        .then_some(segment)
}

/// The x and y ranges that hold every point. The x range is padded by 2% each side so
/// dots at the ends are not cut in half; the y range by 5% below and 25% above, which
/// leaves the upper-left legend room over early, low points; a range
/// of zero width (one point, a flat series, or no data) is widened so the axes can be
/// drawn.
fn ranges(points: impl Iterator<Item = (f64, f64)>) -> ((f64, f64), (f64, f64)) {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = (f64::INFINITY, f64::NEG_INFINITY);
    for (px, py) in points {
        x = (x.0.min(px), x.1.max(px));
        y = (y.0.min(py), y.1.max(py));
    }
    if x.0 > x.1 {
        x = (0.0, 1.0);
    }
    if y.0 > y.1 {
        y = (0.0, 1.0);
    }
    (widen(x, 0.02, 0.02), widen(y, 0.05, 0.25))
}

fn widen((low, high): (f64, f64), below: f64, above: f64) -> (f64, f64) {
    let span = high - low;
    if span > 0.0 {
        (low - span * below, high + span * above)
    } else {
        let pad = (low.abs() * 0.05).max(1.0);
        (low - pad, high + pad)
    }
}

/// Enough decimals for tick labels to differ across a range of `span`: none from 10 up,
/// so request counts read as whole numbers.
fn decimals_for(span: f64) -> usize {
    if span >= 10.0 || !span.is_finite() || span <= 0.0 {
        0
    } else {
        // A span of 1–10 MiB gets one decimal, 0.1–1 two, and so on, up to 6.
        let digits = 1.0 - span.log10().floor();
        if digits >= 6.0 { 6 } else { digits as usize }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn a_full_chart_has_title_axes_legend_and_a_dot_per_quiet_point() {
        let rss: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                let x = f64::from(i) * 500.0;
                (x, 80.0 * MIB + x * 30.0 + f64::from(i % 7) * 0.3 * MIB)
            })
            .collect();
        let heap: Vec<(f64, f64)> = (1..=8)
            .map(|i| {
                let x = f64::from(i) * 12_500.0;
                (x, 40.0 * MIB + x * 25.0)
            })
            .collect();
        let svg = memory_chart(
            "Heap & RSS <release 42>",
            &[Series {
                name: "RSS",
                points: &rss,
            }],
            &[Series {
                name: "heap at quiet points",
                points: &heap,
            }],
            Some((40.0 * MIB, 25.0)),
        )
        .unwrap();

        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("Heap &amp; RSS &lt;release 42&gt;"));
        // plotters writes each text on its own line between the tags.
        for text in ["requests", "MiB", "RSS", "heap at quiet points", "trend"] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "no text {text}"
            );
        }
        // One circle per quiet point, plus the one in the legend.
        assert_eq!(count(&svg, "<circle"), heap.len() + 1);
        // The dots have their own colour: no line is drawn in it.
        let dot_colour = svg
            .split("<circle")
            .nth(1)
            .and_then(|circle| circle.split("fill=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(!svg.contains(&format!(
            "<polyline fill=\"none\" opacity=\"1\" stroke=\"{dot_colour}\""
        )));
        // The trend runs between the first and last quiet points.
        assert!(svg.contains("stroke=\"#000000\" stroke-width=\"2\" points=\""));
        // Tick labels are whole requests, not "10000.0".
        assert!(!svg.contains("\n10000.0\n"));
    }

    #[test]
    fn empty_input_gives_an_empty_chart() {
        let svg = memory_chart("nothing yet", &[], &[], Some((0.0, 1.0))).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("nothing yet"));
        assert_eq!(count(&svg, "<circle"), 0);

        let svg = memory_chart(
            "empty series",
            &[Series {
                name: "RSS",
                points: &[],
            }],
            &[Series {
                name: "heap",
                points: &[],
            }],
            None,
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
    }

    #[test]
    fn a_flat_series_and_a_single_point_get_a_padded_range() {
        let flat = [(0.0, 64.0 * MIB), (10.0, 64.0 * MIB), (20.0, 64.0 * MIB)];
        let svg = memory_chart(
            "flat",
            &[],
            &[Series {
                name: "heap",
                points: &flat,
            }],
            Some((64.0 * MIB, 0.0)),
        )
        .unwrap();
        assert_eq!(count(&svg, "<circle"), flat.len() + 1);

        let one = [(5.0, 1.0 * MIB)];
        let svg = memory_chart(
            "one",
            &[],
            &[Series {
                name: "heap",
                points: &one,
            }],
            None,
        )
        .unwrap();
        assert_eq!(count(&svg, "<circle"), 2);
    }

    #[test]
    fn non_finite_points_are_left_out() {
        let points = [
            (1.0, MIB),
            (f64::NAN, MIB),
            (3.0, f64::INFINITY),
            (4.0, 2.0 * MIB),
        ];
        let svg = memory_chart(
            "odd",
            &[],
            &[Series {
                name: "heap",
                points: &points,
            }],
            Some((f64::NAN, 1.0)),
        )
        .unwrap();
        assert_eq!(count(&svg, "<circle"), 3);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn ranges_pad_degenerate_spans() {
        let ((x0, x1), (y0, y1)) = ranges(std::iter::empty());
        assert!((x0 + 0.02).abs() < 1e-9 && (x1 - 1.02).abs() < 1e-9);
        assert!((y0 + 0.05).abs() < 1e-9 && (y1 - 1.25).abs() < 1e-9);
        let ((x0, x1), (y0, y1)) = ranges([(10.0, 100.0), (10.0, 100.0)].into_iter());
        assert!(x0 < 10.0 && x1 > 10.0 && y0 < 100.0 && y1 > 100.0);
        let (_, (y0, y1)) = ranges([(0.0, 0.0), (1.0, 100.0)].into_iter());
        assert!((y0 + 5.0).abs() < 1e-9 && (y1 - 125.0).abs() < 1e-9);
    }

    #[test]
    fn tick_labels_get_enough_decimals_for_the_range() {
        assert_eq!(decimals_for(250.0), 0);
        assert_eq!(decimals_for(5.0), 1);
        assert_eq!(decimals_for(0.5), 2);
        assert_eq!(decimals_for(0.0), 0);
        assert_eq!(decimals_for(1e-12), 6);
    }
}
