//! The realistic 1 KiB payload the benches share: an order with a customer,
//! eight items and a shipping address.

/// About 1 KiB of JSON text.
pub fn realistic() -> String {
    let mut items = Vec::new();
    for i in 0..8 {
        items.push(format!(
            r#"{{"sku":"SKU-{i:05}","name":"Item number {i} with a name","qty":{i},"price":{}.99,"tags":["a","b","c"]}}"#,
            i * 3
        ));
    }
    format!(
        r#"{{"order_id":"ord-1042","customer":{{"id":"cus-7","email":"someone@example.com","tier":"gold"}},"total":1234.5,"currency":"EUR","items":[{}],"shipping":{{"city":"Lyon","zip":"69001","express":true}}}}"#,
        items.join(",")
    )
}
