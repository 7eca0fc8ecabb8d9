//! The sweep charts (`bench chart`): draws the figures bench/run.sh wrote to a data file as
//! an SVG line chart. Text is left to the SVG viewer (`<text>` elements, sized by plotters'
//! built-in estimate), so drawing needs no font files on the machine.
//!
//! The data file holds one point a line: `series<TAB>x<TAB>y`; a series is drawn in the order
//! its first point appears, points sorted by x; lines that do not parse (a `-` for a figure
//! that could not be measured) are skipped.

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::common::{Args, BoxError};

pub type Series = Vec<(String, Vec<(f64, f64)>)>;

pub fn parse(text: &str) -> Series {
    let mut out: Series = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, x, y] = f[..] else { continue };
        let (Ok(x), Ok(y)) = (x.trim().parse::<f64>(), y.trim().parse::<f64>()) else {
            continue;
        };
        if !(x > 0.0 && y > 0.0) {
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, pts)) => pts.push((x, y)),
            None => out.push((name.to_string(), vec![(x, y)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    /// A logarithmic x axis (queue depth from 1 to 10,000), else a linear one of whole numbers.
    pub log_x: bool,
}

/// Renders the series as an SVG document (log y: the rates span four decades).
pub fn render(series: &Series, l: &Labels) -> Result<String, BoxError> {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    if x0 > x1 {
        return Err(format!("{}: no points to draw", l.title).into());
    }
    if x0 == x1 {
        (x0, x1) = (x0 / 2.0, x1 * 2.0);
    }
    let (y0, y1) = (y0 / 2.0, y1 * 2.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut b = ChartBuilder::on(&root);
        b.caption(l.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64);
        let colors = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(l.x)
                    .y_desc(l.y)
                    .label_style(("sans-serif", 12))
                    .draw()?;
                for (i, (name, p)) in series.iter().enumerate() {
                    let c = colors[i % colors.len()];
                    chart
                        .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
                    chart.draw_series(p.iter().map(|&pt| Circle::new(pt, 3, c.filled())))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::LowerRight)
                    .label_font(("sans-serif", 12))
                    .draw()?;
            }};
        }
        if l.log_x {
            draw!(b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?);
        } else {
            draw!(b.build_cartesian_2d((x0 - 0.5)..(x1 + 0.5), (y0..y1).log_scale())?);
        }
        root.present()?;
    }
    Ok(svg)
}

/// `bench chart --data FILE --out FILE.svg --title T --x-label X --y-label Y [--log-x]`
pub fn run(a: &Args) -> Result<(), BoxError> {
    let series = parse(&std::fs::read_to_string(a.s("data"))?);
    let svg = render(
        &series,
        &Labels {
            title: &a.s("title"),
            x: &a.s("x-label"),
            y: &a.s("y-label"),
            log_x: a.flag("log-x"),
        },
    )?;
    std::fs::write(a.s("out"), svg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_its_text() {
        let s = parse("handler\t1\t13.2\nhandler\t100\t259\nbare\t1\t70\nbare\t100\t-\nbad line\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].1, vec![(1.0, 70.0)]);
        let l = Labels {
            title: "drain rate",
            x: "queue depth",
            y: "ops/s",
            log_x: true,
        };
        let svg = render(&s, &l).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // The words themselves are in the document, for the viewer to set in its own font.
        let texts = svg.matches("<text").count();
        assert!(texts >= 5, "{texts} text elements");
        assert!(
            svg.contains("drain rate") && svg.contains("queue depth") && svg.contains("handler")
        );
        assert!(render(&Vec::new(), &l).is_err());
    }
}
