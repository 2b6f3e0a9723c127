//! The page: a header written here (escaped HTML), the timeline model and the
//! events it draws as JSON blocks, and `page.css` / `page.js` inline. Nothing is
//! fetched, so the file opens from disk or an artifact archive as it is.

use super::Timeline;
use crate::sim::trace::TraceEvent;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Text for HTML content or a quoted attribute.
pub fn escape_html(text: &str) -> String {
    replace_chars(
        text,
        &[
            ('&', "&amp;"),
            ('<', "&lt;"),
            ('>', "&gt;"),
            ('"', "&quot;"),
            ('\'', "&#39;"),
        ],
    )
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` as
/// `\u003c`, `\u003e`, `\u0026` (still the same JSON), so no string in it can
/// close the block (`</script>`) or open a comment (`<!--`).
pub fn escape_json_for_script(json: &str) -> String {
    replace_chars(
        json,
        &[('<', "\\u003c"), ('>', "\\u003e"), ('&', "\\u0026")],
    )
}

fn replace_chars(text: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match table.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// The events the picture refers to, as one JSON array (trace order).
fn events_json(t: &Timeline, events: &[TraceEvent]) -> String {
    let wanted = t.referenced_seqs();
    let drawn: Vec<String> = events
        .iter()
        .filter(|e| wanted.contains(&e.seq))
        .map(TraceEvent::to_json)
        .collect();
    format!("[{}]", drawn.join(",\n"))
}

fn header(t: &Timeline) -> String {
    let (invariant, message) = match &t.violation {
        Some(v) => (v.invariant.as_str(), v.message.as_str()),
        None => ("none", "the run passed"),
    };
    format!(
        "<header><h1>{title}</h1>\n<p class=\"verdict {class}\"><b>{class}</b> \u{2014} invariant <b>{invariant}</b></p>\n<pre class=\"message\">{message}</pre>\n<p class=\"replay\">replay: <code>{replay}</code></p></header>\n",
        title = escape_html(&t.title),
        class = escape_html(&t.class),
        invariant = escape_html(invariant),
        message = escape_html(message),
        replay = escape_html(&t.replay),
    )
}

/// The whole HTML document.
pub fn page(t: &Timeline, events: &[TraceEvent]) -> String {
    let model = serde_json::to_string(t).expect("the timeline serializes");
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!("<title>{}</title>\n", escape_html(&t.title)));
    // First, so that an error anywhere after it is reported on the page.
    html.push_str("<script>window.onerror = function (msg, src, line) { document.body.dataset.error = msg + ' (line ' + line + ')'; };</script>\n");
    html.push_str(&format!("<style>\n{CSS}</style>\n</head>\n<body>\n"));
    html.push_str(&header(t));
    html.push_str(concat!(
        "<nav id=\"controls\"></nav>\n",
        "<section id=\"timeline\"></section>\n",
        "<section id=\"lincheck\"></section>\n",
        "<section id=\"details\"><h2>Selected events</h2><p>Click a span or a mark.</p><div id=\"selected\"></div></section>\n",
    ));
    html.push_str(&format!(
        "<script type=\"application/json\" id=\"timeline-model\">{}</script>\n",
        escape_json_for_script(&model)
    ));
    html.push_str(&format!(
        "<script type=\"application/json\" id=\"timeline-events\">{}</script>\n",
        escape_json_for_script(&events_json(t, events))
    ));
    html.push_str(&format!("<script>\n{JS}</script>\n</body>\n</html>\n"));
    html
}
