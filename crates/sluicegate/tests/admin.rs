//! The admin client against real brokers: topics, partitions and watermarks as produced, a
//! group's committed offsets and members, creating topics (on Kafka; the mock cluster has no
//! CreateTopics), and one clear error when the brokers do not answer or a setting is refused.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{eventually, options, produce, topic_with_records};
use futures_util::StreamExt;
use sluicegate::admin::{Admin, AdminError, MemberAssignment, NewTopic};
use sluicegate::{ClusterOptions, ConsumerEngine, TopicPartition};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);

fn admin(broker: &TestBroker) -> Admin {
    Admin::new(ClusterOptions::new(broker.bootstrap_servers())).expect("an admin client")
}

/// Runs a blocking admin call off the runtime's workers.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(call).await.expect("the call")
}

async fn partitions_and_watermarks_are_as_produced(broker: TestBroker) {
    let topic = unique_name("admin-ends");
    broker.create_topic(&topic, 3).await;
    produce(&broker, &topic, 2, 0..4).await;
    let admin = admin(&broker);
    let (partitions, absent, listed, ends) = blocking(move || {
        let ends: Vec<_> = (0..3)
            .map(|partition| admin.watermarks(&topic, partition).expect("watermarks"))
            .collect();
        (
            admin.partitions(&topic).expect("partitions"),
            admin.partitions("no-such-topic").expect("partitions"),
            admin.topic(&topic).expect("metadata"),
            ends,
        )
    })
    .await;
    assert_eq!(partitions, Some(vec![0, 1, 2]), "{}", broker.name());
    assert_eq!(absent, None, "{}", broker.name());
    let listed = listed.expect("the topic is listed");
    assert_eq!(listed.partition_ids(), vec![0, 1, 2]);
    assert!(listed.error.is_none(), "{listed:?}");
    assert!(listed.partitions.iter().all(|p| p.leader.is_some()));
    let counts: Vec<u64> = ends.iter().map(|ends| ends.records()).collect();
    assert_eq!(counts, vec![4, 4, 0], "{}: {ends:?}", broker.name());
    assert!(ends.iter().all(|ends| ends.low == 0));
}

async fn committed_offsets_and_the_group_members(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 5).await;
    let group = unique_name("admin-group");
    let admin = std::sync::Arc::new(admin(&broker));
    let all = || (0..2).map(|partition| TopicPartition::new(&topic, partition));
    let none = {
        let (admin, wanted, group) = (admin.clone(), all().collect::<Vec<_>>(), group.clone());
        blocking(move || admin.committed_offsets(&group, wanted).expect("committed")).await
    };
    assert!(none.is_empty(), "{}: {none:?}", broker.name());

    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("an engine");
    engine.spawn_subscribers((), |mut stream, ()| async move {
        let acks = stream.acknowledger();
        while let Some(record) = stream.next().await {
            let _ = acks.ack(record.offset).await;
        }
    });
    let expected: BTreeMap<TopicPartition, i64> = all().map(|at| (at, 5)).collect();
    eventually("every record committed", WAIT, || {
        let (admin, wanted, group) = (admin.clone(), all().collect::<Vec<_>>(), group.clone());
        let expected = expected.clone();
        async move {
            blocking(move || admin.committed_offsets(&group, wanted).expect("committed")).await
                == expected
        }
    })
    .await;

    // The engine stamped its commits with the time it made them.
    let commits = {
        let (admin, wanted, group) = (admin.clone(), all().collect::<Vec<_>>(), group.clone());
        blocking(move || admin.commits(&group, wanted).expect("commits")).await
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (partition, commit) in &commits {
        assert_eq!(commit.offset, 5, "{}: {partition}", broker.name());
        let at = commit
            .committed_at_ms
            .unwrap_or_else(|| panic!("{}: {partition} committed without a stamp", broker.name()));
        assert!(
            (now_ms - 60_000..=now_ms).contains(&at),
            "{}: {partition} stamped {at}, now {now_ms}",
            broker.name()
        );
    }

    let described = {
        let (admin, group) = (admin.clone(), group.clone());
        blocking(move || admin.describe_group(&group)).await
    };
    match &broker {
        // The mock cluster has neither ListGroups nor DescribeGroups.
        TestBroker::Embedded(_) => {
            assert!(
                matches!(described, Err(AdminError::DescribeGroup { .. })),
                "{described:?}"
            );
        }
        _ => {
            let described = described.expect("a description").expect("the group");
            assert_eq!(described.group, group);
            assert_eq!(described.state, "Stable");
            assert_eq!(described.protocol_type, "consumer");
            assert_eq!(described.members.len(), 1, "{described:?}");
            let member = &described.members[0];
            assert!(!member.member_id.is_empty() && !member.host.starts_with('/'));
            let mut assigned = match &member.assignment {
                MemberAssignment::Partitions(assigned) => assigned.clone(),
                other => panic!("not read: {other:?}"),
            };
            assigned.sort();
            assert_eq!(assigned, all().collect::<Vec<_>>());
        }
    }
    engine.shutdown().await;
}

async fn topics_are_created_once(broker: TestBroker) {
    let (first, second) = (unique_name("admin-new"), unique_name("admin-new"));
    let admin = admin(&broker);
    let name = broker.name();
    blocking(move || {
        let wanted = [
            NewTopic::new(&first, 2).config("retention.ms", "3600000"),
            NewTopic::new(&second, 1).replication_factor(1),
        ];
        match admin.create_topics(&wanted) {
            Ok(mut created) => {
                created.sort();
                let mut names = vec![first.clone(), second.clone()];
                names.sort();
                assert_eq!(created, names);
                admin
                    .wait_for_topics([&first, &second], WAIT)
                    .expect("listed with leaders");
                assert_eq!(admin.partitions(&first).unwrap(), Some(vec![0, 1]));
                // They exist now: nothing is created, nothing fails.
                assert_eq!(admin.create_topics(&wanted).unwrap(), Vec::<String>::new());
            }
            // The mock cluster has no CreateTopics.
            Err(AdminError::CreateTopic { topic, .. }) if name == "embedded" => {
                assert!(topic == first || topic == second, "{topic}");
            }
            Err(error) => panic!("{name}: {error}"),
        }
    })
    .await;
}

async fn a_topic_that_never_shows_is_named(broker: TestBroker) {
    let admin = admin(&broker);
    let error = blocking(move || {
        admin
            .wait_for_topics(["admin-never-created"], Duration::from_millis(300))
            .unwrap_err()
    })
    .await;
    assert!(
        matches!(&error, AdminError::NotVisible { topic } if topic == "admin-never-created"),
        "{error:?}"
    );
}

on_both_brokers!(
    partitions_and_watermarks_are_as_produced,
    committed_offsets_and_the_group_members,
    topics_are_created_once,
    a_topic_that_never_shows_is_named,
);

#[test]
fn unreachable_brokers_are_one_error_with_librdkafkas_reason() {
    init_tracing();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let brokers = closed.to_string();
    let admin = Admin::new(ClusterOptions::new(&brokers).connect_timeout(Duration::from_secs(1)))
        .expect("an admin client");
    let started = Instant::now();
    let error = admin.partitions("anything").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
    match &error {
        AdminError::Unreachable {
            brokers: named,
            detail,
            ..
        } => {
            assert_eq!(named, &brokers);
            let detail = detail.as_deref().unwrap_or_default();
            assert!(detail.contains("Connection refused"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        std::error::Error::source(&error).is_some(),
        "keeps its cause"
    );
}

#[test]
fn a_refused_property_is_named() {
    let refused =
        Admin::new(ClusterOptions::new("127.0.0.1:9").librdkafka("no.such.property", "1"));
    match refused {
        Err(AdminError::InvalidProperty { key, value, .. }) => {
            assert_eq!((key.as_str(), value.as_str()), ("no.such.property", "1"));
        }
        other => panic!("{:?}", other.err()),
    }
}
