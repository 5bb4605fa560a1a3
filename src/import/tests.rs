use super::*;

#[test]
fn iis_time_spans_become_portico_durations() {
    assert_eq!(
        parse_timespan("00:03:20").map(duration_text).as_deref(),
        Some("200s")
    );
    assert_eq!(
        parse_timespan("00:00:30").map(duration_text).as_deref(),
        Some("30s")
    );
    assert_eq!(
        parse_timespan("1.00:00:00").map(duration_text).as_deref(),
        Some("86400s")
    );
    assert_eq!(
        parse_timespan("00:00:00.1").map(duration_text).as_deref(),
        Some("100ms")
    );
    assert_eq!(parse_timespan("3:20"), None);
    assert_eq!(parse_timespan("00:61:00"), None);
}
