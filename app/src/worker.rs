//! The dataset check's Web Worker side (see `app/js/check-worker.js`): it
//! reads the file in `File.slice`s and runs `hone-dataset`'s checker with the
//! model's tokenizer, so the page stays responsive on a 1 GB file. Only the
//! report (JSON) and the split's per-example items (a transferred
//! `Uint32Array`, 16 bytes per example) travel back.

use hone_dataset::split::Item;
use hone_dataset::Options;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_packing() {
        let items = vec![
            Item {
                group: 0,
                category: u32::MAX,
                key: u64::MAX - 5,
            },
            Item {
                group: 0,
                category: 3,
                key: 1 << 40,
            },
        ];
        assert_eq!(unpack_items(&pack_items(&items)), items);
    }
}

/// Bytes read per slice: big enough to amortise the await, small enough to
/// keep memory flat and progress smooth.
pub const SLICE: f64 = 4.0 * 1024.0 * 1024.0;

/// What the page sends the worker (as JSON, beside the `File`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub options: Options,
    /// The model's tokenizer files; `None` counts characters.
    pub tokenizer: Option<crate::api::TokenizerFiles>,
}

/// `Report::items` (not part of the report's JSON) as flat `u32`s:
/// group, category, key's low half, key's high half.
pub fn pack_items(items: &[Item]) -> Vec<u32> {
    items
        .iter()
        .flat_map(|i| [i.group, i.category, i.key as u32, (i.key >> 32) as u32])
        .collect()
}

/// The inverse of [`pack_items`].
pub fn unpack_items(flat: &[u32]) -> Vec<Item> {
    flat.chunks_exact(4)
        .map(|c| Item {
            group: c[0],
            category: c[1],
            key: u64::from(c[2]) | u64::from(c[3]) << 32,
        })
        .collect()
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::*;
    use hone_dataset::tokens::ChatTokenizer;
    use hone_dataset::{Checker, Measure};
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;

    fn js_error(e: impl std::fmt::Display) -> JsValue {
        JsValue::from_str(&e.to_string())
    }

    /// Runs in the worker: checks `file`, calling `progress(bytes_done)`
    /// after each slice, and returns `{report: JSON string, items:
    /// Uint32Array}` (see [`pack_items`]).
    #[wasm_bindgen]
    pub async fn check_in_worker(
        file: web_sys::File,
        request: String,
        progress: js_sys::Function,
    ) -> Result<JsValue, JsValue> {
        let request: Request = serde_json::from_str(&request).map_err(js_error)?;
        let tokenizer = match &request.tokenizer {
            Some(f) => Some(
                ChatTokenizer::from_files(
                    f.tokenizer.as_bytes(),
                    f.tokenizer_config.as_deref().map(str::as_bytes),
                    f.chat_template.as_deref(),
                )
                .map_err(|e| js_error(format!("The model {} cannot count tokens: {e}", f.name)))?,
            ),
            None => None,
        };
        let measure = tokenizer.as_ref().map(|t| t as &dyn Measure);
        let mut checker = Checker::new(request.options, measure);
        let total = file.size();
        let mut at = 0.0;
        while at < total {
            let end = (at + SLICE).min(total);
            let blob = file.slice_with_f64_and_f64(at, end)?;
            let buffer = JsFuture::from(blob.array_buffer()).await?;
            checker.feed(&js_sys::Uint8Array::new(&buffer).to_vec());
            at = end;
            progress.call1(&JsValue::NULL, &JsValue::from_f64(at))?;
        }
        let mut report = checker.finish();
        let items = js_sys::Uint32Array::from(&pack_items(&report.items)[..]);
        report.items = Vec::new();
        let out = js_sys::Object::new();
        js_sys::Reflect::set(
            &out,
            &"report".into(),
            &serde_json::to_string(&report).map_err(js_error)?.into(),
        )?;
        js_sys::Reflect::set(&out, &"items".into(), &items)?;
        Ok(out.into())
    }
}
