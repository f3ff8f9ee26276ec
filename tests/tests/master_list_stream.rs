//! A LIST larger than the master's store page (500 objects) through the real
//! `corral-master`: streamed in chunks, one snapshot, every item with its own
//! resourceVersion, selectors applied, the same objects as GET returns, and a
//! watch event carrying the resourceVersion of the write.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use corral_tests::master::Master;
use reqwest::Method;
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const N: usize = 1203;
const WRITERS: usize = 8;

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("p{i:05}"), "labels": {"shard": (i % 10).to_string()}},
           "spec": {"nodeName": format!("n{}", i % 3),
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

fn rv(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
}

#[test]
fn list_beyond_one_page_is_streamed_as_one_snapshot() {
    let m = Master::start(&["--no-controllers"]).unwrap_or_else(|e| panic!("starting: {e}"));
    let mut revs = vec![0i64; N];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let m = &m;
                s.spawn(move || {
                    (w..N)
                        .step_by(WRITERS)
                        .map(|i| {
                            let (code, created) = m.call(Method::POST, PODS, Some(&pod(i)));
                            assert_eq!(code, 201, "{created}");
                            (i, rv(&created))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("writer thread") {
                revs[i] = r;
            }
        }
    });

    let (code, list) = m.call(Method::GET, PODS, None);
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), N);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["metadata"]["name"], format!("p{i:05}"));
        assert_eq!(rv(item), revs[i], "{}", item["metadata"]["name"]);
    }
    let newest = *revs.iter().max().expect("revisions");
    assert!(rv(&list) >= newest);

    // A GET of one object answers the same object as the LIST item.
    let (_, one) = m.call(Method::GET, &format!("{PODS}/p00777"), None);
    assert_eq!(one, items[777]);

    let query = format!("{PODS}?labelSelector=shard%3D4&fieldSelector=spec.nodeName%3Dn1");
    let (_, l) = m.call(Method::GET, &query, None);
    let got: Vec<&str> = l["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    let want: Vec<String> = (0..N)
        .filter(|i| i % 10 == 4 && i % 3 == 1)
        .map(|i| format!("p{i:05}"))
        .collect();
    assert_eq!(got, want);

    // A watch from the list's version sees the next write with its version.
    let url = format!(
        "{PODS}?watch=1&resourceVersion={}&timeoutSeconds=20",
        rv(&list)
    );
    let resp = m
        .request(Method::GET, &url)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("watch");
    let mut p = items[5].clone();
    p["metadata"]["labels"]["touched"] = "yes".into();
    let (code, updated) = m.call(Method::PUT, &format!("{PODS}/p00005"), Some(&p));
    assert_eq!(code, 200, "{updated}");
    let mut lines = BufReader::new(resp).lines();
    let line = lines
        .next()
        .expect("a watch event")
        .expect("read the watch");
    let event: Value = serde_json::from_str(&line).expect("the event is JSON");
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"], updated);
    assert_eq!(rv(&event["object"]), rv(&updated));
}
