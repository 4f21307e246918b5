//! Log cases: appends and paging by run and by job. Nothing about job state.

use super::*;

pub async fn logs(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let run = s
        .create_run(
            push_run(a.id, "main", vec![job(0, "one", &[]), job(1, "two", &[])]),
            1,
        )
        .await
        .unwrap();
    let one = job_named(s, run.id, "one").await.id;
    let two = job_named(s, run.id, "two").await.id;
    let lines = |seqs: std::ops::Range<i64>| {
        seqs.map(|seq| NewLogLine {
            seq,
            stream: if seq % 2 == 0 { "stdout" } else { "stderr" }.into(),
            line: format!("line {seq} ✓"),
        })
        .collect::<Vec<_>>()
    };
    s.append_logs(one, 1, &lines(0..3), 10).await.unwrap();
    // A retried upload of the same chunk, and an overlapping one: no duplicates.
    s.append_logs(one, 1, &lines(0..3), 11).await.unwrap();
    s.append_logs(one, 1, &lines(2..5), 12).await.unwrap();
    s.append_logs(two, 1, &lines(0..2), 13).await.unwrap();
    // The same seq in another attempt is another line.
    s.append_logs(one, 2, &lines(0..1), 14).await.unwrap();
    s.append_logs(one, 2, &[], 15).await.unwrap();
    // Big uploads go in batches.
    s.append_logs(two, 2, &lines(0..1200), 16).await.unwrap();

    let all_one = s.job_logs(one, 0, 100).await.unwrap();
    let keys: Vec<_> = all_one.iter().map(|l| (l.attempt, l.seq)).collect();
    assert_eq!(keys, [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0)]);
    assert_eq!(all_one[0].line, "line 0 ✓");
    assert_eq!(all_one[1].stream, "stderr");
    assert_eq!(all_one[0].at, 10);
    assert_eq!(all_one[3].at, 12);
    assert!(all_one.windows(2).all(|w| w[0].id < w[1].id));

    // Paging through a run's logs with `after`.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = s.run_logs(run.id, after, 250).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 250);
        after = page.last().unwrap().id;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 6 + 2 + 1200);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    let two_lines = s.job_logs(two, 0, 5000).await.unwrap();
    assert_eq!(two_lines.len(), 1202);
    assert!(two_lines.iter().all(|l| l.job_id == two));
    let tail = s.job_logs(two, two_lines[1199].id, 10).await.unwrap();
    assert_eq!(tail.len(), 2);

    assert!(matches!(
        s.append_logs(9999, 1, &lines(0..1), 1).await,
        Err(StoreError::NotFound)
    ));
}
