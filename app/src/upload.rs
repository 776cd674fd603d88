//! Browser-side upload: the file goes as the raw request body through
//! `XMLHttpRequest`, the one browser API that reports upload progress.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{File, ProgressEvent, XmlHttpRequest};

/// Starts uploading `file` to `url` (a project's files or datasets);
/// `progress` gets percentages, `done` the file's name or a message for the
/// person.
pub fn send(
    url: &str,
    file: File,
    progress: impl Fn(f64) + 'static,
    done: impl FnOnce(Result<String, String>) + 'static,
) {
    let name = file.name();
    let xhr = match XmlHttpRequest::new() {
        Ok(x) => x,
        Err(_) => return done(Err("This browser cannot upload files.".into())),
    };
    if xhr.open("POST", url).is_err() {
        return done(Err("Could not start the upload.".into()));
    }
    let encoded = js_sys::encode_uri_component(&name);
    let _ = xhr.set_request_header("X-File-Name", &String::from(encoded));
    let _ = xhr.set_request_header("Content-Type", "application/octet-stream");

    let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
        if e.length_computable() && e.total() > 0.0 {
            progress(100.0 * e.loaded() / e.total());
        }
    });
    if let Ok(upload) = xhr.upload() {
        upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    }
    let request = xhr.clone();
    // `loadend` fires once after success, failure or abort; it owns the
    // progress closure, so both are freed together.
    let on_end = Closure::once_into_js(move || {
        drop(on_progress);
        let status = request.status().unwrap_or(0);
        let body = request.response_text().ok().flatten().unwrap_or_default();
        if (200..300).contains(&status) {
            done(Ok(name));
        } else if status == 0 {
            done(Err(
                "The upload was interrupted. Check your connection and try again.".into(),
            ));
        } else {
            done(Err(message_from(&body).unwrap_or_else(|| {
                format!("The server refused the upload (HTTP {status}).")
            })));
        }
    });
    xhr.set_onloadend(Some(on_end.unchecked_ref()));
    // On failure `loadend` still fires and reports it.
    let _ = xhr.send_with_opt_blob(Some(&file));
}

/// The `message` of the server's JSON error body.
fn message_from(body: &str) -> Option<String> {
    let v = js_sys::JSON::parse(body).ok()?;
    js_sys::Reflect::get(&v, &"message".into())
        .ok()?
        .as_string()
}
