//! The dataset check's Web Worker side (see `app/js/check-worker.js`): it
//! reads the file in `File.slice`s and runs `hone-dataset`'s checker with the
//! model's tokenizer, so the page stays responsive on a 1 GB file. Only the
//! report (and the split's per-example items) travel back.

use hone_dataset::split::Item;
use hone_dataset::{Options, Report};
use serde::{Deserialize, Serialize};

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

/// What the worker sends back (as JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub report: Report,
    /// `Report::items` (not part of the report's JSON).
    pub items: Vec<Item>,
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
    /// after each slice, and returns an [`Outcome`] as JSON.
    #[wasm_bindgen]
    pub async fn check_in_worker(
        file: web_sys::File,
        request: String,
        progress: js_sys::Function,
    ) -> Result<String, JsValue> {
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
        let report = checker.finish();
        let items = report.items.clone();
        serde_json::to_string(&Outcome { report, items }).map_err(js_error)
    }
}
