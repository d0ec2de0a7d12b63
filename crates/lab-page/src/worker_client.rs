//! The page's end of the worker ([`rosetta_lab_protocol`]): starts `static/worker.js` (which loads
//! the model's module, `rosetta-lab`, while the page renders), sends requests, routes each reply to its caller — events to a
//! callback as they come, the final reply to the awaiting future — and turns a dead worker into
//! the page's crash notice.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use rosetta_lab_protocol::{self as protocol, Answer, Envelope, Event, Message, Reply, Request};

/// How a request ended without an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Failed(String),
    /// A newer request of the same lane replaced it: nothing to show.
    Cancelled,
}

struct Pending {
    on_event: Box<dyn FnMut(Event)>,
    done: oneshot::Sender<Result<Answer, Stop>>,
}

struct Inner {
    worker: web_sys::Worker,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, Pending>>,
    /// The worker's last panic message, shown when its error event follows.
    panic: RefCell<Option<String>>,
}

#[derive(Clone)]
pub struct LabWorker(Rc<Inner>);

/// The crash notice of `static/main.js`, for a worker that stopped: the same notice a trap of the
/// page's own module gets.
fn show_crash(message: &str) {
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
        let _ = root.set_attribute("data-lab-panic", message);
    }
    let init = web_sys::CustomEventInit::new();
    init.set_detail(&JsValue::from_str(message));
    if let (Some(window), Ok(event)) = (web_sys::window(), web_sys::CustomEvent::new_with_event_init_dict("lab-crashed", &init)) {
        let _ = window.dispatch_event(&event);
    }
}

impl LabWorker {
    pub fn start() -> Result<LabWorker, String> {
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        // The worker reads the link's choices (backend, threads) before it picks a module.
        let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
        let worker = web_sys::Worker::new_with_options(&format!("static/worker.js{search}"), &options)
            .map_err(|e| rosetta_lab_protocol::browser::js_error("the lab's worker could not start", e))?;
        let inner = Rc::new(Inner { worker, next_id: Cell::new(0), pending: RefCell::new(HashMap::new()), panic: RefCell::new(None) });
        let on_message = {
            let inner = Rc::downgrade(&inner);
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
                if let Some(inner) = inner.upgrade() {
                    receive(&inner, event.data());
                }
            })
        };
        let on_error = {
            let inner = Rc::downgrade(&inner);
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
                let Some(inner) = inner.upgrade() else { return };
                crashed(&inner, format!("the worker that runs the model stopped ({}; most likely it ran out of memory)", event.message()));
            })
        };
        inner.worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        inner.worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // The page and its worker live together: so do the handlers.
        on_message.forget();
        on_error.forget();
        Ok(LabWorker(inner))
    }

    /// Sends `request` (with `files`, the visitor's picked files, if any); `on_event` hears its
    /// events; the answer is awaited.
    pub async fn call(
        &self,
        request: Request,
        files: Option<&web_sys::FileList>,
        on_event: impl FnMut(Event) + 'static,
    ) -> Result<Answer, Stop> {
        let id = self.0.next_id.get() + 1;
        self.0.next_id.set(id);
        let (done, answer) = oneshot::channel();
        self.0.pending.borrow_mut().insert(id, Pending { on_event: Box::new(on_event), done });
        let message = js_sys::Object::new();
        let _ = Reflect::set(&message, &"request".into(), &protocol::encode(&Envelope { id, request }).into());
        if let Some(files) = files {
            let _ = Reflect::set(&message, &"files".into(), &js_sys::Array::from(files));
        }
        if let Err(e) = self.0.worker.post_message(&message) {
            self.0.pending.borrow_mut().remove(&id);
            return Err(Stop::Failed(rosetta_lab_protocol::browser::js_error("sending to the lab's worker", e)));
        }
        answer.await.unwrap_or_else(|_| Err(Stop::Failed("the lab's worker stopped".into())))
    }

    /// [`LabWorker::call`] without events.
    pub async fn ask(&self, request: Request) -> Result<Answer, Stop> {
        self.call(request, None, |_| {}).await
    }
}

/// The worker (or one of its threads) stopped: the crash notice, with the panic's message when one
/// came first, and every request in flight ends.
fn crashed(inner: &Inner, fallback: String) {
    let message = inner.panic.borrow().clone().unwrap_or(fallback);
    show_crash(&message);
    for (_, pending) in inner.pending.borrow_mut().drain() {
        let _ = pending.done.send(Err(Stop::Failed(message.clone())));
    }
}

/// The threaded module's threads report a panic or a trap on their own port: the worker itself is
/// blocked in the pool while they compute.
fn listen_to_threads(inner: &Rc<Inner>, ports: JsValue) {
    for port in js_sys::Array::from(&ports).iter() {
        let inner = Rc::downgrade(inner);
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Some(inner) = inner.upgrade() else { return };
            let data = event.data();
            if !kept_panic(&inner, &data)
                && let Some(message) = Reflect::get(&data, &"crashed".into()).ok().and_then(|m| m.as_string())
            {
                crashed(&inner, message);
            }
        });
        let _ = Reflect::set(&port, &"onmessage".into(), on_message.as_ref());
        // The threads live as long as the page: so do their handlers.
        on_message.forget();
    }
}

/// A `{ panic }` note (the worker's or a thread's panic hook), kept for the crash notice that
/// follows. Whether `data` was one.
fn kept_panic(inner: &Inner, data: &JsValue) -> bool {
    let Some(panic) = Reflect::get(data, &"panic".into()).ok().and_then(|p| p.as_string()) else { return false };
    *inner.panic.borrow_mut() = Some(panic);
    true
}

fn receive(inner: &Rc<Inner>, data: JsValue) {
    if kept_panic(inner, &data) {
        return;
    }
    if let Ok(ports) = Reflect::get(&data, &"threadPorts".into())
        && ports.is_object()
    {
        return listen_to_threads(inner, ports);
    }
    let Some(text) = data.as_string() else { return };
    let Message { id, reply } = match protocol::decode::<Message>(&text) {
        Ok(m) => m,
        Err(e) => return web_sys::console::error_1(&e.into()),
    };
    let finished = match reply {
        Reply::Event(event) => {
            // The callback may update signals, and with them views; it must not hold the map.
            let callback = inner.pending.borrow_mut().get_mut(&id).map(|p| std::mem::replace(&mut p.on_event, Box::new(|_| {})));
            if let Some(mut callback) = callback {
                callback(event);
                if let Some(p) = inner.pending.borrow_mut().get_mut(&id) {
                    p.on_event = callback;
                }
            }
            return;
        }
        Reply::Done(answer) => Ok(answer),
        Reply::Failed(message) => Err(Stop::Failed(message)),
        Reply::Cancelled => Err(Stop::Cancelled),
    };
    if let Some(pending) = inner.pending.borrow_mut().remove(&id) {
        let _ = pending.done.send(finished);
    }
}
