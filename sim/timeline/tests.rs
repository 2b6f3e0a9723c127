use serde_json::Value;

use super::*;
use crate::sim::checkers::testing::History;
use crate::sim::trace::EventKind;

/// A 3-node run: elections, a partition healed, node 2 killed and restarted, a
/// clock jump, a client's put (ok) and get (unknown), a LogicNode switching mode.
fn run() -> Vec<TraceEvent> {
    let mut h = History::default();
    let fault = |h: &mut History, action: &str| {
        h.push(
            0,
            EventKind::Fault {
                action: action.into(),
            },
        )
    };
    let mut events = vec![
        h.role(1, "follower", 1, 0),
        h.role(2, "follower", 1, 0),
        h.role(3, "follower", 1, 0),
        h.role(1, "leader", 2, 1),
        fault(
            &mut h,
            r#"{"action":"partition","groups":[[1],[2,3]],"heal_after_ms":500}"#,
        ),
        fault(&mut h, r#"{"action":"heal_network"}"#),
        fault(
            &mut h,
            r#"{"action":"clock_jump","node":3,"delta_ms":-4000}"#,
        ),
        h.push(
            2,
            EventKind::Process {
                change: "killed".into(),
            },
        ),
        h.push(
            2,
            EventKind::Recovered {
                term: 2,
                vote: 1,
                commit: 3,
                snapshot_index: 0,
                snapshot_term: 0,
                last_index: 3,
                applied: 0,
                entries: Vec::new(),
            },
        ),
        h.push(
            3,
            EventKind::ModeSwitched {
                from: "idle".into(),
                to: "local".into(),
            },
        ),
    ];
    events.push(h.push(
        101,
        EventKind::ClientInvoke {
            client: 101,
            op: 1,
            kind: "put".into(),
            key: "k1".into(),
            // A value that would end the script block, were it not escaped.
            value: Some("</script><script>alert(1)</script>".into()),
        },
    ));
    events.push(h.push(
        101,
        EventKind::ClientComplete {
            client: 101,
            op: 1,
            outcome: "ok".into(),
            value: None,
            revision: Some(2),
        },
    ));
    events.push(h.push(
        101,
        EventKind::ClientInvoke {
            client: 101,
            op: 2,
            kind: "get".into(),
            key: "k1".into(),
            value: None,
        },
    ));
    events.push(h.role(1, "follower", 3, 0));
    events
}

fn violation(events: &[TraceEvent]) -> Violation {
    Violation {
        invariant: "election_safety",
        event_seq: events[12].seq,
        message: "two leaders <b>in</b> term 3".into(),
        related: vec![events[3].seq],
    }
}

/// The text of the `<script type="application/json" id="…">` block.
fn json_block(html: &str, id: &str) -> Value {
    let open = format!("<script type=\"application/json\" id=\"{id}\">");
    let start = html.find(&open).expect("the block") + open.len();
    let len = html[start..].find("</script>").expect("its end");
    serde_json::from_str(&html[start..start + len]).expect("the block parses")
}

#[test]
fn every_node_and_client_has_a_lane() {
    let events = run();
    let html = render(
        "steady-1",
        &events,
        "correctness",
        &violation(&events),
        "replay",
    );
    let model = json_block(&html, "timeline-model");
    let lanes: Vec<&str> = model["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(lanes, ["net", "n1", "n2", "n3", "m3", "c101"]);
    let spans = model["spans"].as_array().unwrap();
    let has = |lane: &str, class: &str| {
        spans
            .iter()
            .any(|s| s["lane"] == lane && s["class"] == class)
    };
    assert!(has("n1", "role-leader") && has("n1", "role-follower"));
    assert!(has("n2", "fault-down"), "the kill until the restart");
    assert!(has("net", "fault-net"), "the partition until the heal");
    assert!(has("m3", "mode"));
    assert!(has("c101", "op-ok") && has("c101", "op-unknown"));
    let marks = model["marks"].as_array().unwrap();
    assert!(marks
        .iter()
        .any(|m| m["lane"] == "n3" && m["class"] == "clock-jump"));
    let v = &model["violation"];
    assert_eq!(v["seq"], 12);
    assert_eq!(v["culprits"], serde_json::json!([3]));
}

#[test]
fn embedded_events_parse_back_and_nothing_closes_the_script_early() {
    let events = run();
    let v = violation(&events);
    let html = render("steady-1", &events, "correctness", &v, "replay");
    // Three script blocks of data and code, one early error hook: nothing else.
    assert_eq!(html.matches("</script>").count(), 4, "{html}");
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("two leaders &lt;b&gt;in&lt;/b&gt; term 3"));
    let embedded = json_block(&html, "timeline-events");
    let embedded = embedded.as_array().unwrap();
    // The events drawn (every one here), exactly as trace.jsonl holds them.
    assert_eq!(embedded.len(), events.len());
    for (e, back) in events.iter().zip(embedded) {
        let original: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(&original, back);
    }
    assert_eq!(
        embedded[10]["value"].as_str(),
        Some("</script><script>alert(1)</script>")
    );
    // The same trace draws the same page.
    assert_eq!(
        html,
        render("steady-1", &events, "correctness", &v, "replay")
    );
}

#[test]
fn escaping_keeps_json_and_html_meaning() {
    let json = r#"{"a":"</script><!-- & >"}"#;
    let escaped = escape_json_for_script(json);
    assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('&'));
    let back: Value = serde_json::from_str(&escaped).unwrap();
    assert_eq!(back["a"], "</script><!-- & >");
    assert_eq!(
        escape_html(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn a_passing_run_has_no_violation_and_a_lincheck_failure_draws_its_sub_history() {
    let events = run();
    let none = Violation {
        invariant: "none",
        event_seq: u64::MAX,
        message: "the run passed".into(),
        related: Vec::new(),
    };
    let t = Timeline::build("steady-1.pass", &events, "pass", &none, "replay");
    assert_eq!((t.violation, t.lincheck), (None, None));

    let events = History::default().stale_read("k");
    let v = linearizability::check_trace(&events).unwrap_err();
    let t = Timeline::build("kv-1", &events, "correctness", &v, "replay");
    let c = t.lincheck.as_ref().expect("the counterexample");
    assert_eq!((c.ops.len(), c.linearized.len()), (3, 2));
    let culprits = &t.violation.as_ref().unwrap().culprits;
    assert_eq!(culprits, &[0, 1, 2, 3, 4, 5]);
}
