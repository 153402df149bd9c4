//! A [`Snapshot`] as text: an aligned table for people, or JSON lines for scripts.

use std::time::Duration;

use serde::Serialize;

use crate::console::show_duration;

use super::lookup::{Membership, Owner, PartitionStatus, Snapshot};

/// Marks a lag counted from the oldest record kept because the group committed nothing there.
const FROM_OLDEST: &str = "*";
/// Marks a stalled partition: lag, and no progress committed for the stall time.
const STALLED: &str = "!";
/// What an unknown cell shows.
const NONE: &str = "-";

/// The table: a header row, one row per partition (columns separated by two spaces or more,
/// `-` for unknown), then a line with the group's state and total lag.
pub fn table(snapshot: &Snapshot, stall_after: Duration) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "OWNER",
        "HOST",
        "CLIENT-ID",
    ]
    .map(str::to_owned)];
    for status in &snapshot.partitions {
        let owner = status.owner.as_ref();
        let cell = |field: fn(&Owner) -> &str| owner.map_or(NONE, field).to_owned();
        let lag = match (status.committed, status.stalled) {
            (None, _) => format!("{}{FROM_OLDEST}", status.lag()),
            (Some(_), true) => format!("{}{STALLED}", status.lag()),
            (Some(_), false) => status.lag().to_string(),
        };
        rows.push([
            status.topic.clone(),
            status.partition.to_string(),
            status
                .committed
                .map_or_else(|| NONE.to_owned(), |offset| offset.to_string()),
            status.end.to_string(),
            lag,
            cell(|owner| &owner.member_id),
            cell(|owner| &owner.host),
            cell(|owner| &owner.client_id),
        ]);
    }
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(&format!("{cell:<width$}"));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if snapshot
        .partitions
        .iter()
        .any(|status| status.committed.is_none())
    {
        text.push_str(&format!(
            "{FROM_OLDEST} nothing committed: lag counted from the oldest record kept\n"
        ));
    }
    if snapshot.partitions.iter().any(|status| status.stalled) {
        text.push_str(&format!(
            "{STALLED} stalled: lag, and no progress committed for {} (--stall-after)\n",
            show_duration(stall_after)
        ));
    }
    text.push_str(&summary(snapshot));
    text.push('\n');
    text
}

/// `group orders-app: Stable, 2 members; total lag 12`.
fn summary(snapshot: &Snapshot) -> String {
    let members = match &snapshot.membership {
        // DescribeGroups answers `Dead` for a group it does not know as a classic group: a
        // group under the consumer protocol (KIP-848) has committed offsets but shows here so.
        Membership::Described(Some((state, 0))) if state == "Dead" => {
            "Dead or under the consumer protocol (KIP-848), whose members DescribeGroups does \
             not show"
                .to_owned()
        }
        Membership::Described(Some((state, count))) => {
            format!(
                "{state}, {count} member{}",
                if *count == 1 { "" } else { "s" }
            )
        }
        Membership::Described(None) => "no members".to_owned(),
        Membership::Unknown(_) => "members unknown".to_owned(),
    };
    let lag: i64 = snapshot.partitions.iter().map(PartitionStatus::lag).sum();
    let stalled = snapshot
        .partitions
        .iter()
        .filter(|status| status.stalled)
        .count();
    let stalled = match stalled {
        0 => String::new(),
        count => format!("; {count} stalled"),
    };
    format!(
        "group {}: {members}; total lag {lag}{stalled}",
        snapshot.group
    )
}

/// One partition as a JSON object.
#[derive(Serialize)]
struct JsonPartition<'a> {
    group: &'a str,
    topic: &'a str,
    partition: i32,
    /// `null` when the group committed nothing on the partition.
    committed: Option<i64>,
    end: i64,
    lag: i64,
    /// `null` when no member owns it (or owners are unknown).
    owner: Option<JsonOwner<'a>>,
    /// Milliseconds since the Unix epoch; `null` unless a Sluicegate engine committed.
    committed_at_ms: Option<i64>,
    /// Lag, and no progress committed for the stall time.
    stalled: bool,
}

#[derive(Serialize)]
struct JsonOwner<'a> {
    member_id: &'a str,
    client_id: &'a str,
    host: &'a str,
}

/// One JSON object per partition, one per line.
pub fn json_lines(snapshot: &Snapshot) -> anyhow::Result<String> {
    let mut text = String::new();
    for status in &snapshot.partitions {
        let object = JsonPartition {
            group: &snapshot.group,
            topic: &status.topic,
            partition: status.partition,
            committed: status.committed,
            end: status.end,
            lag: status.lag(),
            owner: status.owner.as_ref().map(|owner| JsonOwner {
                member_id: &owner.member_id,
                client_id: &owner.client_id,
                host: &owner.host,
            }),
            committed_at_ms: status.committed_at_ms,
            stalled: status.stalled,
        };
        text.push_str(&serde_json::to_string(&object)?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let owner = Owner {
            member_id: "app-1-abc".to_owned(),
            client_id: "app-1".to_owned(),
            host: "10.0.0.7".to_owned(),
        };
        Snapshot {
            group: "g".to_owned(),
            membership: Membership::Described(Some(("Stable".to_owned(), 1))),
            partitions: vec![
                PartitionStatus {
                    topic: "orders".to_owned(),
                    partition: 0,
                    committed: Some(7),
                    low: 0,
                    end: 10,
                    owner: Some(owner),
                    committed_at_ms: Some(1_764_900_000_000),
                    stalled: false,
                },
                PartitionStatus {
                    topic: "orders".to_owned(),
                    partition: 1,
                    committed: None,
                    low: 2,
                    end: 5,
                    owner: None,
                    committed_at_ms: None,
                    stalled: false,
                },
                PartitionStatus {
                    topic: "orders".to_owned(),
                    partition: 2,
                    committed: Some(4),
                    low: 0,
                    end: 9,
                    owner: None,
                    committed_at_ms: Some(1_764_800_000_000),
                    stalled: true,
                },
            ],
        }
    }

    #[test]
    fn the_table_aligns_columns_and_marks_lag_without_commits_and_stalls() {
        let text = table(&snapshot(), Duration::from_secs(300));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TOPIC   PARTITION  COMMITTED  END  LAG  OWNER      HOST      CLIENT-ID"
        );
        assert_eq!(
            lines[1],
            "orders  0          7          10   3    app-1-abc  10.0.0.7  app-1"
        );
        assert_eq!(
            lines[2],
            "orders  1          -          5    3*   -          -         -"
        );
        assert_eq!(
            lines[3],
            "orders  2          4          9    5!   -          -         -"
        );
        assert!(lines[4].starts_with("* nothing committed"), "{}", lines[4]);
        assert_eq!(
            lines[5],
            "! stalled: lag, and no progress committed for 300 s (--stall-after)"
        );
        assert_eq!(
            lines[6],
            "group g: Stable, 1 member; total lag 11; 1 stalled"
        );
    }

    #[test]
    fn a_dead_group_with_commits_may_be_one_under_the_consumer_protocol() {
        let mut dead = snapshot();
        dead.membership = Membership::Described(Some(("Dead".to_owned(), 0)));
        assert!(summary(&dead).starts_with(
            "group g: Dead or under the consumer protocol (KIP-848), whose members \
             DescribeGroups does not show; total lag 11"
        ));
        dead.membership = Membership::Described(Some(("Empty".to_owned(), 0)));
        assert!(summary(&dead).starts_with("group g: Empty, 0 members;"));
    }

    #[test]
    fn json_has_one_object_per_partition() {
        let text = json_lines(&snapshot()).unwrap();
        let objects: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(objects.len(), 3);
        assert_eq!(
            objects[0],
            serde_json::json!({
                "group": "g", "topic": "orders", "partition": 0, "committed": 7, "end": 10,
                "lag": 3, "owner": {"member_id": "app-1-abc", "client_id": "app-1", "host": "10.0.0.7"},
                "committed_at_ms": 1_764_900_000_000_i64, "stalled": false
            })
        );
        assert_eq!(objects[2]["stalled"], true);
        assert_eq!(objects[1]["committed"], serde_json::Value::Null);
        assert_eq!(objects[1]["lag"], 3);
        assert_eq!(objects[1]["owner"], serde_json::Value::Null);
    }
}
