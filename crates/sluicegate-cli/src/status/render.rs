//! A [`Snapshot`] as text: an aligned table for people, or JSON lines for scripts.

use serde::Serialize;

use super::lookup::{Membership, Owner, PartitionStatus, Snapshot};

/// Marks a lag counted from the oldest record kept because the group committed nothing there.
const FROM_OLDEST: &str = "*";
/// What an unknown cell shows.
const NONE: &str = "-";

/// The table: a header row, one row per partition (columns separated by two spaces or more,
/// `-` for unknown), then a line with the group's state and total lag.
pub fn table(snapshot: &Snapshot) -> String {
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
        let lag = match status.committed {
            Some(_) => status.lag().to_string(),
            None => format!("{}{FROM_OLDEST}", status.lag()),
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
    text.push_str(&summary(snapshot));
    text.push('\n');
    text
}

/// `group orders-app: Stable, 2 members; total lag 12`.
fn summary(snapshot: &Snapshot) -> String {
    let members = match &snapshot.membership {
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
    format!("group {}: {members}; total lag {lag}", snapshot.group)
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
                },
                PartitionStatus {
                    topic: "orders".to_owned(),
                    partition: 1,
                    committed: None,
                    low: 2,
                    end: 5,
                    owner: None,
                },
            ],
        }
    }

    #[test]
    fn the_table_aligns_columns_and_marks_lag_without_commits() {
        let text = table(&snapshot());
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
        assert!(lines[3].starts_with("* nothing committed"), "{}", lines[3]);
        assert_eq!(lines[4], "group g: Stable, 1 member; total lag 6");
    }

    #[test]
    fn json_has_one_object_per_partition() {
        let text = json_lines(&snapshot()).unwrap();
        let objects: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(
            objects[0],
            serde_json::json!({
                "group": "g", "topic": "orders", "partition": 0, "committed": 7, "end": 10,
                "lag": 3, "owner": {"member_id": "app-1-abc", "client_id": "app-1", "host": "10.0.0.7"}
            })
        );
        assert_eq!(objects[1]["committed"], serde_json::Value::Null);
        assert_eq!(objects[1]["lag"], 3);
        assert_eq!(objects[1]["owner"], serde_json::Value::Null);
    }
}
