//! scripts/ansi2svg.py, which draws the TUI screenshots (scripts/screenshot.sh): colours, bold,
//! backgrounds and block elements come out as a terminal shows them, cell by cell, and an empty
//! capture is refused.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ansi2svg.py")
}

fn draw(capture: &str, cols: &str, rows: &str) -> anyhow::Result<(std::process::Output, String)> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("screen.txt");
    let output = dir.path().join("screen.svg");
    std::fs::write(&input, capture)?;
    let out = Command::new("python3")
        .arg(script())
        .args([&input, &output])
        .args(["--cols", cols, "--rows", rows, "--title", "omsctl tui"])
        .output()?;
    let svg = std::fs::read_to_string(&output).unwrap_or_default();
    Ok((out, svg))
}

#[test]
fn a_capture_is_drawn_cell_by_cell_with_its_colours() -> anyhow::Result<()> {
    // Bold red "ok", a blue background run of two cells, a full block in 256-colour green, a
    // lower half block, and a box-drawing line on the second row.
    let capture = "\x1b[1;31mok\x1b[0m\x1b[44m  \x1b[0m\x1b[38;5;46m█\x1b[0m▄\n┌─┐\n";
    let (out, svg) = draw(capture, "8", "3")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(svg.starts_with("<svg"), "{svg}");
    // The text cells, each at its own column, bold and red.
    assert!(
        svg.contains(r##"fill="#cc0000" font-weight="bold">o</text>"##),
        "{svg}"
    );
    assert!(svg.contains(">k</text>"), "{svg}");
    // One background rectangle two cells wide (8.4 px each), in the palette's blue.
    assert!(
        svg.contains(r##"width="16.8" height="17.0" fill="#3465a4""##),
        "{svg}"
    );
    // The full block is a box in colour 46 of the 256 (#00ff00), not a glyph.
    assert!(svg.contains(r##"fill="#00ff00"/>"##), "{svg}");
    assert!(!svg.contains(">█</text>"), "{svg}");
    // The box drawing stays text, one character per cell.
    for ch in ["┌", "─", "┐"] {
        assert!(svg.contains(&format!(">{ch}</text>")), "{ch}: {svg}");
    }
    assert!(svg.contains(">omsctl tui</text>"), "{svg}");
    Ok(())
}

#[test]
fn an_empty_capture_is_refused() -> anyhow::Result<()> {
    let (out, _) = draw("  \n", "10", "2")?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was captured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
