use super::*;

fn sample() -> StoredHead {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    headers.append("set-cookie", HeaderValue::from_static("b=2"));
    headers.insert(
        "x-latin1",
        HeaderValue::from_bytes(b"caf\xe9\tt\xff").unwrap(),
    );
    StoredHead {
        status: StatusCode::NOT_FOUND,
        headers: StoredFields::from_map(&headers),
        request_time: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        response_time: UNIX_EPOCH + Duration::new(1_700_000_001, 999_999_999),
        url: "http://example.com/a?b".into(),
        body_len: 42,
        derived: Default::default(),
    }
}

#[test]
fn round_trips_every_field_and_byte() {
    let head = sample();
    let json = head.to_json();
    assert_eq!(json["v"], 1);
    assert_eq!(json["headers"][0], json!(["content-type", "text/plain"]));
    let back = StoredHead::from_json(&json).unwrap();
    assert_eq!(back, head);
    assert_eq!(
        back.headers.get("x-latin1").unwrap().as_bytes(),
        b"caf\xe9\tt\xff"
    );
    let map = back.headers.to_map();
    let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
}

#[test]
fn survives_a_trip_through_text() {
    let head = sample();
    let text = serde_json::to_string(&head.to_json()).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(StoredHead::from_json(&parsed).unwrap(), head);
}

#[test]
fn rejects_a_head_with_more_fields_than_a_map_can_hold() {
    let mut json = sample().to_json();
    let many: Vec<Value> = (0..=fields::MAX_FIELDS)
        .map(|_| json!(["x-many", "1"]))
        .collect();
    json["headers"] = Value::Array(many);
    assert_eq!(
        StoredHead::from_json(&json),
        Err(MetaError::Malformed("headers"))
    );
}

#[test]
fn rejects_other_versions() {
    let mut json = sample().to_json();
    json["v"] = json!(2);
    assert_eq!(
        StoredHead::from_json(&json),
        Err(MetaError::Version(Some(2)))
    );
    json.as_object_mut().unwrap().remove("v");
    assert_eq!(StoredHead::from_json(&json), Err(MetaError::Version(None)));
    assert_eq!(
        StoredHead::from_json(&Value::Null),
        Err(MetaError::Malformed("head"))
    );
}

#[test]
fn rejects_malformed_fields() {
    let cases: [(&str, Value, &str); 7] = [
        ("status", json!(1000), "status"),
        ("status", json!("200"), "status"),
        ("headers", json!([["bad name", "x"]]), "headers"),
        ("headers", json!([["x", "a\nb"]]), "headers"),
        ("headers", json!([["x", [256]]]), "headers"),
        ("response_time", json!([1, 1_000_000_000]), "response_time"),
        ("body_len", json!(-1), "body_len"),
    ];
    for (key, value, err) in cases {
        let mut json = sample().to_json();
        json[key] = value;
        assert_eq!(
            StoredHead::from_json(&json),
            Err(MetaError::Malformed(err)),
            "{key}"
        );
    }
    let mut json = sample().to_json();
    json.as_object_mut().unwrap().remove("url");
    assert_eq!(
        StoredHead::from_json(&json),
        Err(MetaError::Malformed("url"))
    );
}

#[test]
fn approx_size_grows_with_fields() {
    let head = sample();
    let mut bigger = head.clone();
    let mut fields = bigger.headers.to_map();
    fields.insert("x-long", HeaderValue::from_str(&"v".repeat(1000)).unwrap());
    bigger.headers = StoredFields::from_map(&fields);
    assert!(head.approx_size() > 100);
    assert!(bigger.approx_size() >= head.approx_size() + 1000);
}
