//! The repository's own rules: compare-and-swap, terminal states, expiry, poison copies.

use super::*;
use crate::adapters::memory::MemoryRecordStore;
use crate::domain::ports::SystemClock;

fn repository() -> (Operations, Arc<MemoryRecordStore>, Arc<Notifier>) {
    let records = Arc::new(MemoryRecordStore::new());
    let notifier = Arc::new(Notifier::default());
    let ops = Operations::new(records.clone(), Arc::new(SystemClock), notifier.clone());
    (ops, records, notifier)
}

fn operation(retention: time::Duration) -> Operation {
    Operation::new(
        OperationId::new_random(),
        "http://x/api/RequestStatus/1".into(),
        OffsetDateTime::now_utc(),
        retention,
    )
}

#[tokio::test]
async fn a_stale_version_loses_the_race_and_the_update_starts_again_from_storage() {
    let (ops, _, _) = repository();
    let op = operation(time::Duration::hours(1));
    let first = ops.create(&op).await.unwrap();
    // Someone else moves it on; our remembered version is now stale.
    let Update::Changed(_, _) = ops
        .update(op.id, None, |o, now| {
            o.transition(Status::Running, None, now)
        })
        .await
        .unwrap()
    else {
        panic!("changed")
    };
    let update = ops
        .update(op.id, Some((op.clone(), first)), |o, now| {
            o.transition(Status::Succeeded, None, now)
        })
        .await
        .unwrap();
    let Update::Changed(done, _) = update else {
        panic!("the second attempt, from storage, wins")
    };
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(
        ops.load(op.id).await.unwrap().unwrap().0.status,
        Status::Succeeded
    );
}

#[tokio::test]
async fn a_terminal_state_is_never_overwritten_and_wakes_waiters_once_written() {
    let (ops, _, notifier) = repository();
    let op = operation(time::Duration::hours(1));
    ops.create(&op).await.unwrap();
    let waiter = notifier.subscribe(op.id);
    let woken = waiter.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    ops.update(op.id, None, |o, now| {
        o.transition(Status::Canceled, None, now)
    })
    .await
    .unwrap();
    woken.await;
    assert_eq!(waiter.ended().map(|o| o.status), Some(Status::Canceled));
    let again = ops
        .update(op.id, None, |o, now| {
            o.transition(Status::Succeeded, None, now)
        })
        .await
        .unwrap();
    assert!(matches!(again, Update::AlreadyEnded(o) if o.status == Status::Canceled));
}

#[tokio::test]
async fn an_expired_or_missing_operation_is_not_found() {
    let (ops, _, _) = repository();
    let gone = operation(time::Duration::ZERO);
    ops.create(&gone).await.unwrap();
    for id in [gone.id, OperationId::new_random()] {
        let r = ops
            .update(id, None, |o, now| o.transition(Status::Running, None, now))
            .await;
        assert!(matches!(r, Err(DomainError::NotFound)));
    }
}

#[tokio::test]
async fn poison_copies_are_kept_once_per_message_text() {
    let (ops, _, _) = repository();
    let copy = PoisonCopy {
        operation_id: None,
        message_id: "m".into(),
        text: "junk".into(),
        status: None,
        last_error: OperationError::new("InvalidMessage", "not JSON"),
        received_date_time: OffsetDateTime::now_utc(),
        expiration_date_time: OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    let key = ops.keep_poison_copy(&copy).await.unwrap();
    assert_eq!(ops.keep_poison_copy(&copy).await.unwrap(), key);
    assert_eq!(ops.poison_copies().await.unwrap(), vec![copy]);
    assert!(matches!(
        ops.expiry_of(Kind::PoisonCopy, &key).await.unwrap(),
        Some(Expiry::At {
            operation: None,
            ..
        })
    ));
}
