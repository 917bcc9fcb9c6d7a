// Inline definitions of postgres_store, included at the end of postgres_store.hpp.
#pragma once

#include <revdesk/store/detail/attempt_cursor.hpp>
#include <revdesk/store/detail/record_checks.hpp>
#include <revdesk/store/detail/pg_schema.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace revdesk::detail {

inline std::string generated_node_id() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        std::snprintf(host, sizeof host, "node");
    }
    std::random_device random;
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(random()));
    return std::string(host) + "-" + std::to_string(::getpid()) + "-" + suffix;
}

inline void add_scope(std::vector<pg_param>& params, std::optional<scope_id> const& s) {
    if (s) {
        params.push_back(pg_param::text(s->text));
        params.push_back(pg_param::boolean(s->is_number));
    } else {
        params.push_back(pg_param::null());
        params.push_back(pg_param::boolean(false));
    }
}

inline std::optional<scope_id> read_scope(pg_result const& r, int row, int column) {
    if (r.is_null(row, column)) {
        return std::nullopt;
    }
    return scope_id{r.text(row, column), r.boolean(row, column + 1)};
}

// $1 to $14 in the column order of the subscriptions table.
inline std::vector<pg_param> subscription_params(subscription const& s) {
    std::vector<pg_param> p;
    p.push_back(pg_param::text(s.id));
    p.push_back(pg_param::text(s.workspace));
    p.push_back(pg_param::text(s.webhook_url));
    p.push_back(pg_param::text(checked_type_name(s.type)));
    add_scope(p, s.workflow_id);
    add_scope(p, s.campaign_id);
    p.push_back(pg_param::text(s.secret));
    p.push_back(pg_param::boolean(s.enabled));
    p.push_back(pg_param::int64(s.created_at));
    p.push_back(pg_param::text(s.previous_secret));
    p.push_back(pg_param::int64(s.previous_secret_expires_at));
    p.push_back(pg_param::int64(s.updated_at));
    return p;
}

#define REVDESK_PG_SUBSCRIPTION_COLUMNS                                                            \
    "id, workspace, webhook_url, event_type, workflow_id, workflow_id_is_number, campaign_id, "    \
    "campaign_id_is_number, secret, enabled, created_at, previous_secret, "                        \
    "previous_secret_expires_at, updated_at"

inline subscription read_subscription(pg_result const& r, int row) {
    subscription s;
    s.id = r.text(row, 0);
    s.workspace = r.text(row, 1);
    s.webhook_url = r.text(row, 2);
    s.type = parse_stored_type(r.text(row, 3), "subscriptions", s.id);
    s.workflow_id = read_scope(r, row, 4);
    s.campaign_id = read_scope(r, row, 6);
    s.secret = r.text(row, 8);
    s.enabled = r.boolean(row, 9);
    s.created_at = r.int64(row, 10);
    s.previous_secret = r.text(row, 11);
    s.previous_secret_expires_at = r.int64(row, 12);
    s.updated_at = r.int64(row, 13);
    return s;
}

// The columns that read_event expects, in its order.
#define REVDESK_PG_EVENT_COLUMNS                                                                   \
    "e.id, e.workspace, e.event_type, e.payload, e.workflow_id, e.workflow_id_is_number, "         \
    "e.campaign_id, e.campaign_id_is_number, e.created_at, e.idempotency_key, e.response"

inline event read_event(pg_result const& r, int row, int first) {
    event e;
    e.id = r.text(row, first);
    e.workspace = r.text(row, first + 1);
    e.type = parse_stored_type(r.text(row, first + 2), "events", e.id);
    e.payload = r.bytes(row, first + 3);
    e.workflow_id = read_scope(r, row, first + 4);
    e.campaign_id = read_scope(r, row, first + 6);
    e.created_at = r.int64(row, first + 8);
    if (!r.is_null(row, first + 9)) {
        e.idempotency_key = r.text(row, first + 9);
    }
    e.response = r.text(row, first + 10);
    return e;
}

inline delivery_state parse_pg_state(std::string_view name, std::string_view id) {
    for (auto s : {delivery_state::pending, delivery_state::delivered, delivery_state::failed,
                   delivery_state::cancelled}) {
        if (state_name(s) == name) {
            return s;
        }
    }
    throw std::runtime_error("unknown delivery state '" + std::string(name) +
                             "' in deliveries row '" + std::string(id) + "'");
}

#define REVDESK_PG_DELIVERY_COLUMNS                                                                \
    "id, event_id, subscription_id, event_type, state, attempts, next_attempt_at"

inline delivery read_delivery(pg_result const& r, int row) {
    delivery d;
    d.id = r.text(row, 0);
    d.event_id = r.text(row, 1);
    d.subscription_id = r.text(row, 2);
    d.type = parse_stored_type(r.text(row, 3), "deliveries", d.id);
    d.state = parse_pg_state(r.text(row, 4), d.id);
    d.attempts = static_cast<std::uint32_t>(r.int64(row, 5));
    d.next_attempt_at = r.int64(row, 6);
    return d;
}

// The pending deliveries with their events, as load_pending and claim_due return them: the
// delivery's id, subscription_id, event_type, attempts and next_attempt_at, then the event.
inline std::vector<pending_delivery> read_pending(pg_result const& r) {
    std::vector<pending_delivery> result;
    for (int row = 0; row < r.rows(); ++row) {
        pending_delivery& p = result.emplace_back();
        p.source = read_event(r, row, 5);
        p.message.id = r.text(row, 0);
        p.message.event_id = p.source.id;
        p.message.subscription_id = r.text(row, 1);
        p.message.type = parse_stored_type(r.text(row, 2), "deliveries", p.message.id);
        p.message.state = delivery_state::pending;
        p.message.attempts = static_cast<std::uint32_t>(r.int64(row, 3));
        p.message.next_attempt_at = r.int64(row, 4);
    }
    return result;
}

// The columns that read_attempt expects; the last one, sequence, is the listing position.
#define REVDESK_PG_ATTEMPT_COLUMNS                                                                 \
    "id, delivery_id, subscription_id, event_id, number, started_at, duration_ms, status, "        \
    "error, response_body, sequence"

inline attempt read_attempt(pg_result const& r, int row) {
    attempt a;
    a.id = r.text(row, 0);
    a.delivery_id = r.text(row, 1);
    a.subscription_id = r.text(row, 2);
    a.event_id = r.text(row, 3);
    a.number = static_cast<std::uint32_t>(r.int64(row, 4));
    a.started_at = r.int64(row, 5);
    a.duration_ms = r.int64(row, 6);
    a.status = static_cast<int>(r.int64(row, 7));
    a.error = r.text(row, 8);
    a.response_body = r.bytes(row, 9);
    return a;
}

inline std::int64_t pg_row_limit(std::size_t limit) {
    return static_cast<std::int64_t>(
        std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
}

inline asio::awaitable<void> pg_insert_delivery(pg_connection& c, delivery const& d) {
    std::vector<pg_param> p{pg_param::text(d.id),
                            pg_param::text(d.event_id),
                            pg_param::text(d.subscription_id),
                            pg_param::text(checked_type_name(d.type)),
                            pg_param::text(state_name(d.state)),
                            pg_param::int64(d.attempts),
                            pg_param::int64(d.next_attempt_at)};
    co_await c.query("INSERT INTO deliveries (id, event_id, subscription_id, event_type, state, "
                     "attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                     p);
}

// Inserts `deliveries` with one statement; their sequence numbers follow their order.
inline asio::awaitable<void> pg_insert_deliveries(pg_connection& c,
                                                  std::vector<delivery> const& deliveries) {
    std::vector<std::string> ids, event_ids, subscription_ids, types, states;
    std::vector<std::int64_t> attempts, next_attempt_at;
    for (auto const& d : deliveries) {
        ids.push_back(d.id);
        event_ids.push_back(d.event_id);
        subscription_ids.push_back(d.subscription_id);
        types.emplace_back(checked_type_name(d.type));
        states.emplace_back(state_name(d.state));
        attempts.push_back(d.attempts);
        next_attempt_at.push_back(d.next_attempt_at);
    }
    std::vector<pg_param> p{pg_param::text_array(ids),
                            pg_param::text_array(event_ids),
                            pg_param::text_array(subscription_ids),
                            pg_param::text_array(types),
                            pg_param::text_array(states),
                            pg_param::int64_array(attempts),
                            pg_param::int64_array(next_attempt_at)};
    co_await c.query("INSERT INTO deliveries (id, event_id, subscription_id, event_type, state, "
                     "attempts, next_attempt_at) "
                     "SELECT id, event_id, subscription_id, event_type, state, attempts, "
                     "next_attempt_at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
                     "$5::text[], $6::bigint[], $7::bigint[]) WITH ORDINALITY AS d(id, event_id, "
                     "subscription_id, event_type, state, attempts, next_attempt_at, position) "
                     "ORDER BY position",
                     p);
}

// Cancels the pending deliveries of a subscription, leased ones included. Like every statement
// that changes several deliveries while others may change some of them, it locks them in the
// order of their ids, so that two such transactions never wait for each other in a cycle.
inline asio::awaitable<void> pg_cancel_pending(pg_connection& c, std::string const& id) {
    std::vector<pg_param> p{pg_param::text(id)};
    co_await c.query("UPDATE deliveries SET state = 'cancelled', lease_owner = NULL, "
                     "lease_until = NULL WHERE id IN (SELECT id FROM deliveries "
                     "WHERE subscription_id = $1 AND state = 'pending' ORDER BY id FOR UPDATE)",
                     p);
}

inline asio::awaitable<void> pg_notify_subscription(pg_connection& c, std::string const& id) {
    std::vector<pg_param> p{pg_param::text(id)};
    co_await c.query("SELECT pg_notify('revdesk_subscriptions', $1::text)", p);
}

inline asio::awaitable<void> pg_notify_work(pg_connection& c) {
    std::vector<pg_param> none;
    co_await c.query("SELECT pg_notify('revdesk_work', '')", none);
}

// Returns the id of the event of `workspace` that holds `key`, or nothing.
inline asio::awaitable<std::optional<std::string>>
pg_key_holder(pg_connection& c, std::string const& workspace, std::string const& key) {
    std::vector<pg_param> p{pg_param::text(workspace), pg_param::text(key)};
    auto r = co_await c.query(
        "SELECT id FROM events WHERE workspace = $1 AND idempotency_key = $2", p);
    std::optional<std::string> holder;
    if (r.rows() > 0) {
        holder = r.text(0, 0);
    }
    co_return holder;
}

inline asio::awaitable<bool> pg_insert_event(pg_connection& c, event const& e,
                                             std::vector<delivery> const& deliveries) {
    if (e.idempotency_key) {
        // Another transaction may insert the key after this check; its unique index then fails
        // the insert below, which the caller turns into the same error.
        auto holder = co_await pg_key_holder(c, e.workspace, *e.idempotency_key);
        // An event that repeats its own id fails below as a duplicate id.
        if (holder && *holder != e.id) {
            throw duplicate_key_error(duplicate_key_message(e, *holder), *holder);
        }
    }
    std::vector<pg_param> p{pg_param::text(e.id), pg_param::text(e.workspace),
                            pg_param::text(checked_type_name(e.type)), pg_param::bytes(e.payload)};
    add_scope(p, e.workflow_id);
    add_scope(p, e.campaign_id);
    p.push_back(pg_param::int64(e.created_at));
    p.push_back(e.idempotency_key ? pg_param::text(*e.idempotency_key) : pg_param::null());
    p.push_back(pg_param::text(e.response));
    co_await c.query("INSERT INTO events (id, workspace, event_type, payload, workflow_id, "
                     "workflow_id_is_number, campaign_id, campaign_id_is_number, created_at, "
                     "idempotency_key, response) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text, $11)",
                     p);
    if (!deliveries.empty()) {
        co_await pg_insert_deliveries(c, deliveries);
    }
    co_return true;
}

// Records one attempt in the caller's transaction: locks the delivery, updates it while `node` or
// no node holds its lease, and inserts the attempt.
inline asio::awaitable<void> pg_record_attempt(pg_connection& c, attempt const& a,
                                               delivery const& updated, std::string const& node) {
    std::vector<pg_param> key{pg_param::text(updated.id)};
    auto found = co_await c.query(
        "SELECT subscription_id, event_id FROM deliveries WHERE id = $1 FOR UPDATE", key);
    if (found.rows() == 0) {
        throw std::runtime_error(delivery_not_found(updated.id));
    }
    auto subscription_id = found.text(0, 0);
    auto event_id = found.text(0, 1);
    check_attempt_owner(a, subscription_id, event_id);

    // The delivery changes only while this node holds it or nobody does; another node's
    // cancellation stands.
    std::vector<pg_param> update{pg_param::text(updated.id),
                                 pg_param::text(state_name(updated.state)),
                                 pg_param::int64(updated.attempts),
                                 pg_param::int64(updated.next_attempt_at), pg_param::text(node)};
    co_await c.query("UPDATE deliveries SET "
                     "state = CASE WHEN state = 'cancelled' THEN state ELSE $2::text END, "
                     "attempts = $3, next_attempt_at = $4, lease_owner = NULL, lease_until = NULL "
                     "WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $5::text)",
                     update);

    std::vector<pg_param> insert{pg_param::text(a.id),
                                 pg_param::text(a.delivery_id),
                                 pg_param::text(subscription_id),
                                 pg_param::text(event_id),
                                 pg_param::int64(a.number),
                                 pg_param::int64(a.started_at),
                                 pg_param::int64(a.duration_ms),
                                 pg_param::int64(a.status),
                                 pg_param::text(a.error),
                                 pg_param::bytes(a.response_body)};
    // An empty id is replaced by one generated from the row's sequence.
    co_await c.query(
        "INSERT INTO attempts (sequence, id, delivery_id, subscription_id, event_id, number, "
        "started_at, duration_ms, status, error, response_body) "
        "SELECT n.s, CASE WHEN $1::text = '' THEN 'att_' || lpad(to_hex(n.s), 16, '0') "
        "ELSE $1::text END, $2, $3, $4, $5, $6, $7, $8, $9, $10 "
        "FROM (SELECT nextval(pg_get_serial_sequence('attempts', 'sequence')) AS s) AS n",
        insert);
}

// Returns `bytes` as lowercase hex digits, for decode(..., 'hex').
inline std::string pg_hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) {
        auto b = static_cast<unsigned char>(c);
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 0x0f]);
    }
    return out;
}

/// Applies the missing migrations on `c`, each step in its own transaction under the advisory
/// lock.
inline asio::awaitable<postgres_migration_result> pg_migrate(pg_connection& c) {
    auto latest = static_cast<int>(pg_migrations.size());
    postgres_migration_result result;
    bool first = true;
    for (;;) {
        co_await c.execute("BEGIN");
        std::exception_ptr error;
        bool done = false;
        int version = 0;
        try {
            co_await c.execute("SELECT pg_advisory_xact_lock(" +
                               std::to_string(pg_migration_lock) + ")");
            co_await c.execute(pg_version_table);
            auto r = co_await c.execute(
                "SELECT coalesce(max(version), 0) FROM revdesk_schema_migrations");
            version = static_cast<int>(r.int64(0, 0));
            if (first) {
                result.previous_version = version;
                first = false;
            }
            if (version == latest) {
                co_await c.execute("COMMIT");
                done = true;
            } else if (version < 0 || version > latest) {
                throw postgres_error("XX000", "the database's schema version " +
                                                  std::to_string(version) +
                                                  " is not one this build supports (0 to " +
                                                  std::to_string(latest) +
                                                  "); use the build that wrote it");
            } else {
                auto next = std::to_string(version + 1);
                try {
                    co_await c.execute(pg_migrations[static_cast<std::size_t>(version)]);
                } catch (postgres_error const& e) {
                    throw postgres_error(e.sqlstate(), "migration to schema version " + next +
                                                           " failed: " + e.what());
                }
                co_await c.execute("INSERT INTO revdesk_schema_migrations (version) VALUES (" +
                                   next + ")");
                co_await c.execute("COMMIT");
            }
        } catch (...) {
            error = std::current_exception();
        }
        if (error) {
            if (c.ok()) {
                try {
                    co_await c.execute("ROLLBACK");
                } catch (...) {
                    c.close();
                }
            }
            std::rethrow_exception(error);
        }
        if (done) {
            result.current_version = latest;
            co_return result;
        }
    }
}

} // namespace revdesk::detail

namespace revdesk {

/// The notification listener's state, shared with its coroutine, which may outlive the store
/// by a few handlers after close.
struct postgres_store::listen_state {
    explicit listen_state(asio::any_io_executor executor)
        : delay(executor) {}

    std::function<void(store_change const&)> watcher;
    bool stopped = false;
    detail::pg_connection* current = nullptr; // The connection being used, to cancel its wait.
    asio::steady_timer delay;

    void notify(store_change const& change) {
        // A copy, so that a watcher may replace itself.
        auto w = watcher;
        if (w) {
            w(change);
        }
    }

    static asio::awaitable<void> run(std::shared_ptr<listen_state> self,
                                     std::unique_ptr<detail::pg_connection> connection,
                                     asio::any_io_executor executor, postgres_options options);
};

/// One queued insert_event call.
struct postgres_store::write_job {
    explicit write_job(asio::any_io_executor executor)
        : wake(executor, std::chrono::steady_clock::time_point::max()) {}

    event e;
    std::vector<delivery> deliveries;
    std::exception_ptr error;
    bool done = false;
    asio::steady_timer wake;
};

/// One queued record_attempt call. `settled` is set once its outcome is final: committed, or
/// failed with `error`.
struct postgres_store::attempt_job {
    explicit attempt_job(asio::any_io_executor executor)
        : wake(executor, std::chrono::steady_clock::time_point::max()) {}

    attempt a;
    delivery updated;
    std::exception_ptr error;
    bool settled = false;
    bool done = false;
    asio::steady_timer wake;
};

/// A pool connection, returned to the pool when destroyed.
class postgres_store::pooled {
public:
    pooled(std::shared_ptr<postgres_store*> owner, std::unique_ptr<detail::pg_connection> connection)
        : owner_(std::move(owner))
        , connection_(std::move(connection)) {}
    pooled(pooled&& other) noexcept
        : owner_(std::move(other.owner_))
        , connection_(std::move(other.connection_)) {}
    pooled& operator=(pooled&&) = delete;
    ~pooled() {
        if (owner_ != nullptr && *owner_ != nullptr) {
            (*owner_)->give_back(std::move(connection_));
        }
    }

    detail::pg_connection& operator*() const noexcept { return *connection_; }
    detail::pg_connection* operator->() const noexcept { return connection_.get(); }

private:
    std::shared_ptr<postgres_store*> owner_; // null once moved from
    std::unique_ptr<detail::pg_connection> connection_;
};

inline asio::awaitable<void>
postgres_store::listen_state::run(std::shared_ptr<listen_state> self,
                                  std::unique_ptr<detail::pg_connection> connection,
                                  asio::any_io_executor executor, postgres_options options) {
    auto on_notify = [&self](std::string channel, std::string payload) {
        store_change change;
        if (channel == "revdesk_subscriptions") {
            change.what = store_change::kind::subscription;
            change.subscription_id = std::move(payload);
        }
        self->notify(change);
    };
    std::function<void(std::string, std::string)> handler = on_notify;
    auto delay = options.reconnect_delay;
    while (!self->stopped) {
        if (!connection) {
            connection = std::make_unique<detail::pg_connection>(executor);
            self->current = connection.get();
            std::exception_ptr error;
            try {
                co_await connection->connect(options.conninfo, options.connect_timeout);
                co_await connection->execute("LISTEN revdesk_work; LISTEN revdesk_subscriptions");
            } catch (...) {
                error = std::current_exception();
            }
            if (self->stopped) {
                break;
            }
            if (error) {
                self->current = nullptr;
                connection.reset();
                self->delay.expires_after(delay);
                std::error_code ignored;
                co_await self->delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
                delay = std::min(delay * 2, options.max_reconnect_delay);
                continue;
            }
            delay = options.reconnect_delay;
            // Whatever was committed while the channel was down was not notified.
            self->notify(store_change{store_change::kind::resync, {}});
            if (self->stopped) {
                break;
            }
        }
        self->current = connection.get();
        std::exception_ptr error;
        try {
            co_await connection->wait_notifications(handler);
        } catch (...) {
            error = std::current_exception();
        }
        if (error && !self->stopped) {
            self->current = nullptr;
            connection.reset();
        }
    }
    self->current = nullptr;
}

inline postgres_store::postgres_store(asio::any_io_executor executor, postgres_options options)
    : executor_(std::move(executor))
    , options_(std::move(options)) {
    if (options_.pool_size == 0) {
        throw std::invalid_argument("postgres_options::pool_size must be at least 1");
    }
    if (options_.max_batch_writes == 0) {
        throw std::invalid_argument("postgres_options::max_batch_writes must be at least 1");
    }
    node_id_ = options_.node_id.empty() ? detail::generated_node_id() : options_.node_id;
    next_delay_ = options_.reconnect_delay;
}

inline postgres_store::~postgres_store() {
    *self_ = nullptr;
    closed_ = true;
    stop_listener();
    idle_.clear();
}

inline int postgres_store::schema_version() noexcept {
    return static_cast<int>(detail::pg_migrations.size());
}

inline void postgres_store::stop_listener() noexcept {
    if (!listener_) {
        return;
    }
    listener_->stopped = true;
    if (listener_->current != nullptr) {
        listener_->current->cancel();
    }
    listener_->delay.cancel();
    listener_.reset();
}

template <typename T>
asio::awaitable<T> postgres_store::on_store(asio::awaitable<T> op) {
    co_return co_await asio::co_spawn(executor_, std::move(op), asio::use_awaitable);
}

inline void postgres_store::check_open() const {
    if (closed_) {
        throw std::runtime_error("the PostgreSQL store is closed");
    }
    if (!opened_) {
        throw std::runtime_error("the PostgreSQL store is not open: await open() first");
    }
}

inline asio::awaitable<postgres_store::pooled> postgres_store::acquire() {
    for (;;) {
        check_open();
        while (!idle_.empty()) {
            auto connection = std::move(idle_.back());
            idle_.pop_back();
            if (connection->still_alive()) {
                co_return pooled(self_, std::move(connection));
            }
            --open_count_;
        }
        if (open_count_ < options_.pool_size) {
            if (last_connect_error_ && std::chrono::steady_clock::now() < retry_after_) {
                throw *last_connect_error_;
            }
            ++open_count_;
            auto connection = std::make_unique<detail::pg_connection>(executor_);
            std::exception_ptr error;
            try {
                co_await connection->connect(options_.conninfo, options_.connect_timeout);
            } catch (postgres_error const& e) {
                last_connect_error_ = e;
                retry_after_ = std::chrono::steady_clock::now() + next_delay_;
                next_delay_ = std::min(next_delay_ * 2, options_.max_reconnect_delay);
                error = std::current_exception();
            } catch (...) {
                error = std::current_exception();
            }
            if (error) {
                --open_count_;
                wake_one_waiter();
                std::rethrow_exception(error);
            }
            last_connect_error_.reset();
            next_delay_ = options_.reconnect_delay;
            co_return pooled(self_, std::move(connection));
        }
        auto waiter = std::make_shared<asio::steady_timer>(
            executor_, std::chrono::steady_clock::time_point::max());
        waiters_.push_back(waiter);
        std::error_code ignored;
        co_await waiter->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
}

inline void postgres_store::give_back(std::unique_ptr<detail::pg_connection> connection) {
    if (closed_ || !connection || !connection->ok()) {
        --open_count_;
    } else {
        idle_.push_back(std::move(connection));
    }
    wake_one_waiter();
}

inline void postgres_store::wake_one_waiter() {
    if (!waiters_.empty()) {
        waiters_.front()->cancel();
        waiters_.pop_front();
    }
}

template <typename T, typename Body>
asio::awaitable<T> postgres_store::transaction(Body body) {
    auto connection = co_await acquire();
    std::optional<T> result;
    std::exception_ptr error;
    try {
        co_await connection->execute("BEGIN");
        result.emplace(co_await body(*connection));
        co_await connection->execute("COMMIT");
    } catch (...) {
        error = std::current_exception();
    }
    if (error) {
        if (connection->ok()) {
            try {
                co_await connection->execute("ROLLBACK");
            } catch (...) {
                connection->close();
            }
        }
        std::rethrow_exception(error);
    }
    co_return std::move(*result);
}

template <typename T, typename Body>
asio::awaitable<T> postgres_store::single(Body body) {
    auto connection = co_await acquire();
    co_return co_await body(*connection);
}

inline asio::awaitable<void> postgres_store::open() {
    auto op = open_on_store();
    co_await on_store(std::move(op));
}

inline asio::awaitable<void> postgres_store::open_on_store() {
    if (opened_ || closed_) {
        throw std::runtime_error("postgres_store::open may be called once, before close");
    }
    // The first connection checks the target and migrates; it then joins the pool.
    auto connection = std::make_unique<detail::pg_connection>(executor_);
    co_await connection->connect(options_.conninfo, options_.connect_timeout);
    target_ = detail::describe_target(connection->handle());
    co_await detail::pg_migrate(*connection);

    auto listening = std::make_unique<detail::pg_connection>(executor_);
    co_await listening->connect(options_.conninfo, options_.connect_timeout);
    co_await listening->execute("LISTEN revdesk_work; LISTEN revdesk_subscriptions");

    opened_ = true;
    ++open_count_;
    idle_.push_back(std::move(connection));
    listener_ = std::make_shared<listen_state>(executor_);
    auto run = listen_state::run(listener_, std::move(listening), executor_, options_);
    asio::co_spawn(executor_, std::move(run), asio::detached);
}

inline asio::awaitable<void> postgres_store::close() {
    auto op = close_on_store();
    co_await on_store(std::move(op));
}

inline asio::awaitable<void> postgres_store::close_on_store() {
    closed_ = true;
    stop_listener();
    open_count_ -= idle_.size();
    idle_.clear();
    while (!waiters_.empty()) {
        wake_one_waiter();
    }
    co_return;
}

inline asio::awaitable<postgres_migration_result>
postgres_store::migrate(asio::any_io_executor executor, postgres_options options) {
    auto op = [](asio::any_io_executor executor,
                 postgres_options options) -> asio::awaitable<postgres_migration_result> {
        detail::pg_connection connection(executor);
        co_await connection.connect(options.conninfo, options.connect_timeout);
        co_return co_await detail::pg_migrate(connection);
    }(executor, std::move(options));
    co_return co_await asio::co_spawn(executor, std::move(op), asio::use_awaitable);
}

inline void postgres_store::watch(std::function<void(store_change const&)> on_change) {
    auto set = [this, on_change = std::move(on_change)]() mutable {
        if (listener_) {
            listener_->watcher = std::move(on_change);
        }
    };
    asio::dispatch(executor_, std::move(set));
}

// Subscriptions.

inline asio::awaitable<void> postgres_store::insert_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    auto body = [s = s](detail::pg_connection& c) -> asio::awaitable<bool> {
        auto p = detail::subscription_params(s);
        co_await c.query("INSERT INTO subscriptions (" REVDESK_PG_SUBSCRIPTION_COLUMNS
                         ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                         p);
        co_await detail::pg_notify_subscription(c, s.id);
        co_return true;
    };
    auto op = transaction<bool>(std::move(body));
    co_await on_store(std::move(op));
}

inline asio::awaitable<bool> postgres_store::update_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    auto body = [s = s](detail::pg_connection& c) -> asio::awaitable<bool> {
        auto p = detail::subscription_params(s);
        auto r = co_await c.query(
            "UPDATE subscriptions SET webhook_url = $3, event_type = $4, workflow_id = $5, "
            "workflow_id_is_number = $6, campaign_id = $7, campaign_id_is_number = $8, "
            "secret = $9, enabled = $10, created_at = $11, previous_secret = $12, "
            "previous_secret_expires_at = $13, updated_at = $14 "
            "WHERE id = $1 AND workspace = $2",
            p);
        if (r.affected() == 0) {
            co_return false;
        }
        if (!s.enabled) {
            co_await detail::pg_cancel_pending(c, s.id);
        }
        co_await detail::pg_notify_subscription(c, s.id);
        co_return true;
    };
    auto op = transaction<bool>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<bool> postgres_store::erase_subscription(std::string_view workspace,
                                                                std::string_view id) {
    auto body = [workspace = std::string(workspace),
                 id = std::string(id)](detail::pg_connection& c) -> asio::awaitable<bool> {
        std::vector<detail::pg_param> p{detail::pg_param::text(id),
                                        detail::pg_param::text(workspace)};
        auto r = co_await c.query("DELETE FROM subscriptions WHERE id = $1 AND workspace = $2", p);
        if (r.affected() == 0) {
            co_return false;
        }
        co_await detail::pg_cancel_pending(c, id);
        co_await detail::pg_notify_subscription(c, id);
        co_return true;
    };
    auto op = transaction<bool>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::vector<subscription>> postgres_store::load_subscriptions() {
    auto body = [](detail::pg_connection& c) -> asio::awaitable<std::vector<subscription>> {
        std::vector<detail::pg_param> none;
        auto r = co_await c.query("SELECT " REVDESK_PG_SUBSCRIPTION_COLUMNS
                                  " FROM subscriptions ORDER BY created_at, id",
                                  none);
        std::vector<subscription> result;
        for (int row = 0; row < r.rows(); ++row) {
            result.push_back(detail::read_subscription(r, row));
        }
        co_return result;
    };
    auto op = single<std::vector<subscription>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::optional<subscription>>
postgres_store::find_subscription(std::string_view id) {
    auto body = [id = std::string(id)](
                    detail::pg_connection& c) -> asio::awaitable<std::optional<subscription>> {
        std::vector<detail::pg_param> p{detail::pg_param::text(id)};
        auto r = co_await c.query(
            "SELECT " REVDESK_PG_SUBSCRIPTION_COLUMNS " FROM subscriptions WHERE id = $1", p);
        std::optional<subscription> result;
        if (r.rows() > 0) {
            result = detail::read_subscription(r, 0);
        }
        co_return result;
    };
    auto op = single<std::optional<subscription>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

// Events and group commit.

inline asio::awaitable<void> postgres_store::insert_event(event const& e,
                                                          std::vector<delivery> const& deliveries) {
    detail::check_event_deliveries(e, deliveries);
    auto op = insert_event_on_store(e, deliveries);
    co_await on_store(std::move(op));
}

inline asio::awaitable<void> postgres_store::insert_event_on_store(event e,
                                                                   std::vector<delivery> deliveries) {
    check_open();
    auto job = std::make_shared<write_job>(executor_);
    job->e = std::move(e);
    job->deliveries = std::move(deliveries);
    write_queue_.push_back(job);
    if (!writer_running_) {
        writer_running_ = true;
        asio::co_spawn(executor_, run_writer(), asio::detached);
    }
    while (!job->done) {
        std::error_code ignored;
        co_await job->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    if (job->error) {
        std::rethrow_exception(job->error);
    }
}

inline asio::awaitable<void> postgres_store::run_writer() {
    std::vector<std::shared_ptr<write_job>> batch;
    while (!write_queue_.empty()) {
        batch.clear();
        while (!write_queue_.empty() && batch.size() < options_.max_batch_writes) {
            batch.push_back(std::move(write_queue_.front()));
            write_queue_.pop_front();
        }
        std::exception_ptr error;
        try {
            auto connection = co_await acquire();
            co_await commit_batch(*connection, batch);
        } catch (...) {
            error = std::current_exception();
        }
        // Callers resume only now, after the commit that holds their write.
        for (auto& job : batch) {
            if (error && !job->error) {
                job->error = error;
            }
            job->done = true;
            job->wake.cancel();
        }
    }
    writer_running_ = false;
}

inline asio::awaitable<void>
postgres_store::commit_batch(detail::pg_connection& connection,
                             std::vector<std::shared_ptr<write_job>> const& batch) {
    std::exception_ptr failure;
    try {
        co_await connection.execute("BEGIN");
        bool any_deliveries = false;
        for (auto& job : batch) {
            // Each write runs inside a savepoint, so a write that fails is rolled back alone and
            // keeps its error while the others stay in the transaction.
            co_await connection.execute("SAVEPOINT batch_write");
            std::exception_ptr error;
            bool key_taken = false;
            try {
                co_await detail::pg_insert_event(connection, job->e, job->deliveries);
            } catch (postgres_error const& e) {
                key_taken = e.sqlstate() == "23505" && job->e.idempotency_key &&
                            std::string_view(e.what()).find("events_by_idempotency_key") !=
                                std::string_view::npos;
                error = std::current_exception();
            } catch (...) {
                error = std::current_exception();
            }
            if (!error) {
                co_await connection.execute("RELEASE SAVEPOINT batch_write");
                any_deliveries = any_deliveries || !job->deliveries.empty();
                continue;
            }
            if (!connection.ok()) {
                std::rethrow_exception(error);
            }
            co_await connection.execute("ROLLBACK TO SAVEPOINT batch_write");
            co_await connection.execute("RELEASE SAVEPOINT batch_write");
            if (key_taken) {
                // Another node committed the key after this write checked it.
                auto holder =
                    co_await detail::pg_key_holder(connection, job->e.workspace,
                                                   *job->e.idempotency_key);
                if (holder) {
                    error = std::make_exception_ptr(duplicate_key_error(
                        detail::duplicate_key_message(job->e, *holder), *holder));
                }
            }
            job->error = error;
        }
        if (any_deliveries) {
            co_await detail::pg_notify_work(connection);
        }
        co_await connection.execute("COMMIT");
        ++commit_count_;
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        if (connection.ok()) {
            try {
                co_await connection.execute("ROLLBACK");
            } catch (...) {
                connection.close();
            }
        }
        // Nothing of the batch was committed, so every write reports the failure.
        for (auto& job : batch) {
            job->error = failure;
        }
    }
}

inline asio::awaitable<std::optional<event>> postgres_store::find_event(std::string_view workspace,
                                                                        std::string_view id) {
    auto body = [workspace = std::string(workspace), id = std::string(id)](
                    detail::pg_connection& c) -> asio::awaitable<std::optional<event>> {
        std::vector<detail::pg_param> p{detail::pg_param::text(id),
                                        detail::pg_param::text(workspace)};
        auto r = co_await c.query("SELECT " REVDESK_PG_EVENT_COLUMNS
                                  " FROM events AS e WHERE e.id = $1 AND e.workspace = $2",
                                  p);
        std::optional<event> result;
        if (r.rows() > 0) {
            result = detail::read_event(r, 0, 0);
        }
        co_return result;
    };
    auto op = single<std::optional<event>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::optional<event>>
postgres_store::find_event_by_idempotency_key(std::string_view workspace, std::string_view key,
                                              unix_ms not_before) {
    auto body = [workspace = std::string(workspace), key = std::string(key),
                 not_before](detail::pg_connection& c) -> asio::awaitable<std::optional<event>> {
        std::vector<detail::pg_param> p{detail::pg_param::text(workspace),
                                        detail::pg_param::text(key),
                                        detail::pg_param::int64(not_before)};
        auto r = co_await c.query(
            "SELECT " REVDESK_PG_EVENT_COLUMNS " FROM events AS e "
            "WHERE e.workspace = $1 AND e.idempotency_key = $2 AND e.created_at >= $3",
            p);
        std::optional<event> result;
        if (r.rows() > 0) {
            result = detail::read_event(r, 0, 0);
        }
        co_return result;
    };
    auto op = single<std::optional<event>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::size_t>
postgres_store::release_idempotency_keys(unix_ms created_before) {
    auto body = [created_before](detail::pg_connection& c) -> asio::awaitable<std::size_t> {
        std::vector<detail::pg_param> p{detail::pg_param::int64(created_before)};
        auto r = co_await c.query("UPDATE events SET idempotency_key = NULL, response = '' "
                                  "WHERE idempotency_key IS NOT NULL AND created_at < $1",
                                  p);
        co_return r.affected();
    };
    auto op = single<std::size_t>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::vector<delivery>>
postgres_store::list_deliveries(std::string_view event_id) {
    auto body = [event_id = std::string(event_id)](
                    detail::pg_connection& c) -> asio::awaitable<std::vector<delivery>> {
        std::vector<detail::pg_param> p{detail::pg_param::text(event_id)};
        auto r = co_await c.query("SELECT " REVDESK_PG_DELIVERY_COLUMNS
                                  " FROM deliveries WHERE event_id = $1 ORDER BY sequence",
                                  p);
        std::vector<delivery> result;
        for (int row = 0; row < r.rows(); ++row) {
            result.push_back(detail::read_delivery(r, row));
        }
        co_return result;
    };
    auto op = single<std::vector<delivery>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<void>
postgres_store::insert_deliveries(std::vector<delivery> const& deliveries) {
    detail::check_deliveries(deliveries);
    auto body = [deliveries = deliveries](detail::pg_connection& c) -> asio::awaitable<bool> {
        for (auto const& d : deliveries) {
            // The foreign key would reject the row too, but its error does not name the event.
            // KEY SHARE keeps the event from being purged before this transaction commits.
            std::vector<detail::pg_param> p{detail::pg_param::text(d.event_id)};
            auto r = co_await c.query("SELECT 1 FROM events WHERE id = $1 FOR KEY SHARE", p);
            if (r.rows() == 0) {
                throw std::runtime_error(detail::event_not_found(d.event_id));
            }
            co_await detail::pg_insert_delivery(c, d);
        }
        if (!deliveries.empty()) {
            co_await detail::pg_notify_work(c);
        }
        co_return true;
    };
    auto op = transaction<bool>(std::move(body));
    co_await on_store(std::move(op));
}

inline asio::awaitable<void> postgres_store::record_attempt(attempt const& a,
                                                            delivery const& updated) {
    detail::check_attempt(a, updated);
    auto op = record_attempt_on_store(a, updated);
    co_await on_store(std::move(op));
}

inline asio::awaitable<void> postgres_store::record_attempt_on_store(attempt a, delivery updated) {
    check_open();
    auto job = std::make_shared<attempt_job>(executor_);
    job->a = std::move(a);
    job->updated = std::move(updated);
    attempt_queue_.push_back(job);
    if (!attempt_writer_running_) {
        attempt_writer_running_ = true;
        asio::co_spawn(executor_, run_attempt_writer(), asio::detached);
    }
    while (!job->done) {
        std::error_code ignored;
        co_await job->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    if (job->error) {
        std::rethrow_exception(job->error);
    }
}

inline asio::awaitable<void> postgres_store::run_attempt_writer() {
    std::vector<std::shared_ptr<attempt_job>> batch;
    std::unordered_set<std::string> deliveries;
    while (!attempt_queue_.empty()) {
        // A batch names each delivery once, so that its statements change each row once; a
        // second call for a delivery waits for the next batch, which keeps the call order.
        batch.clear();
        deliveries.clear();
        while (!attempt_queue_.empty() && batch.size() < options_.max_batch_writes &&
               deliveries.insert(attempt_queue_.front()->updated.id).second) {
            batch.push_back(std::move(attempt_queue_.front()));
            attempt_queue_.pop_front();
        }
        std::exception_ptr error;
        try {
            auto connection = co_await acquire();
            co_await commit_attempts(*connection, batch);
        } catch (...) {
            error = std::current_exception();
        }
        // Callers resume only now, after the commit that holds their write.
        for (auto& job : batch) {
            if (error && !job->settled) {
                job->error = error;
            }
            job->done = true;
            job->wake.cancel();
        }
    }
    attempt_writer_running_ = false;
}

inline asio::awaitable<void>
postgres_store::commit_attempts(detail::pg_connection& connection,
                                std::vector<std::shared_ptr<attempt_job>> const& batch) {
    std::vector<attempt_job*> alone;
    std::exception_ptr failure;
    try {
        co_await connection.execute("BEGIN");

        // Locks the deliveries in the order of their ids (see pg_cancel_pending) and reads what
        // the attempts copy from them.
        std::vector<std::string> ids;
        std::vector<std::string> named;
        for (auto const& job : batch) {
            ids.push_back(job->updated.id);
            if (!job->a.id.empty()) {
                named.push_back(job->a.id);
            }
        }
        std::vector<detail::pg_param> lock{detail::pg_param::text_array(ids)};
        auto found = co_await connection.query(
            "SELECT id, subscription_id, event_id FROM deliveries "
            "WHERE id = ANY ($1::text[]) ORDER BY id FOR UPDATE",
            lock);
        std::unordered_map<std::string, int> row_of;
        for (int row = 0; row < found.rows(); ++row) {
            row_of.emplace(found.text(row, 0), row);
        }
        std::unordered_set<std::string> taken;
        if (!named.empty()) {
            std::vector<detail::pg_param> p{detail::pg_param::text_array(named)};
            auto r = co_await connection.query(
                "SELECT id FROM attempts WHERE id = ANY ($1::text[])", p);
            for (int row = 0; row < r.rows(); ++row) {
                taken.insert(r.text(row, 0));
            }
        }

        // The columns of the calls that the batch writes.
        std::vector<std::string> delivery_ids, states, attempt_ids, subscription_ids, event_ids,
            errors, bodies;
        std::vector<std::int64_t> attempts, next_attempt_at, numbers, started_at, durations,
            statuses;
        std::vector<attempt_job*> written;
        for (auto const& job : batch) {
            auto row = row_of.find(job->updated.id);
            if (row == row_of.end()) {
                job->error = std::make_exception_ptr(
                    std::runtime_error(detail::delivery_not_found(job->updated.id)));
                job->settled = true;
                continue;
            }
            auto subscription_id = found.text(row->second, 1);
            auto event_id = found.text(row->second, 2);
            try {
                detail::check_attempt_owner(job->a, subscription_id, event_id);
            } catch (...) {
                job->error = std::current_exception();
                job->settled = true;
                continue;
            }
            if (taken.contains(job->a.id)) {
                // Its own transaction reports the database's error for the duplicate id.
                alone.push_back(job.get());
                continue;
            }
            written.push_back(job.get());
            delivery_ids.push_back(job->updated.id);
            states.emplace_back(detail::state_name(job->updated.state));
            attempts.push_back(job->updated.attempts);
            next_attempt_at.push_back(job->updated.next_attempt_at);
            attempt_ids.push_back(job->a.id);
            subscription_ids.push_back(std::move(subscription_id));
            event_ids.push_back(std::move(event_id));
            numbers.push_back(job->a.number);
            started_at.push_back(job->a.started_at);
            durations.push_back(job->a.duration_ms);
            statuses.push_back(job->a.status);
            errors.push_back(job->a.error);
            bodies.push_back(detail::pg_hex(job->a.response_body));
        }

        if (!written.empty()) {
            std::vector<detail::pg_param> p{detail::pg_param::text_array(delivery_ids),
                                            detail::pg_param::text_array(states),
                                            detail::pg_param::int64_array(attempts),
                                            detail::pg_param::int64_array(next_attempt_at),
                                            detail::pg_param::text_array(attempt_ids),
                                            detail::pg_param::text_array(subscription_ids),
                                            detail::pg_param::text_array(event_ids),
                                            detail::pg_param::int64_array(numbers),
                                            detail::pg_param::int64_array(started_at),
                                            detail::pg_param::int64_array(durations),
                                            detail::pg_param::int64_array(statuses),
                                            detail::pg_param::text_array(errors),
                                            detail::pg_param::text_array(bodies),
                                            detail::pg_param::text(node_id_)};
            // The changes of pg_record_attempt for every written call at once; the attempts take
            // their sequence numbers in call order.
            co_await connection.query(
                "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], "
                "$4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], "
                "$10::bigint[], $11::bigint[], $12::text[], $13::text[]) WITH ORDINALITY "
                "AS i(delivery_id, state, attempts, next_attempt_at, attempt_id, subscription_id, "
                "event_id, number, started_at, duration_ms, status, error, body, position)), "
                "updated AS (UPDATE deliveries AS d SET "
                "state = CASE WHEN d.state = 'cancelled' THEN d.state ELSE i.state END, "
                "attempts = i.attempts, next_attempt_at = i.next_attempt_at, "
                "lease_owner = NULL, lease_until = NULL FROM input AS i "
                "WHERE d.id = i.delivery_id "
                "AND (d.lease_owner IS NULL OR d.lease_owner = $14::text)) "
                "INSERT INTO attempts (sequence, id, delivery_id, subscription_id, event_id, "
                "number, started_at, duration_ms, status, error, response_body) "
                "SELECT n.s, CASE WHEN n.attempt_id = '' "
                "THEN 'att_' || lpad(to_hex(n.s), 16, '0') ELSE n.attempt_id END, "
                "n.delivery_id, n.subscription_id, n.event_id, n.number, n.started_at, "
                "n.duration_ms, n.status, n.error, decode(n.body, 'hex') "
                "FROM (SELECT i.*, nextval(pg_get_serial_sequence('attempts', 'sequence')) AS s "
                "FROM (SELECT * FROM input ORDER BY position) AS i) AS n",
                p);
        }
        if (written.empty()) {
            co_await connection.execute("ROLLBACK");
        } else {
            co_await connection.execute("COMMIT");
            ++attempt_commit_count_;
        }
        for (auto* job : written) {
            job->settled = true;
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        if (connection.ok()) {
            try {
                co_await connection.execute("ROLLBACK");
            } catch (...) {
                connection.close();
            }
        }
        if (!connection.ok()) {
            // The writer gives this error to every call whose outcome is not known.
            std::rethrow_exception(failure);
        }
        // A statement of the batch failed and nothing of it was committed: every call whose
        // outcome is not known runs alone and gets its own result.
        alone.clear();
        for (auto const& job : batch) {
            if (!job->settled) {
                alone.push_back(job.get());
            }
        }
    }
    for (auto* job : alone) {
        co_await record_alone(connection, *job);
    }
}

inline asio::awaitable<void> postgres_store::record_alone(detail::pg_connection& connection,
                                                          attempt_job& job) {
    std::exception_ptr error;
    try {
        co_await connection.execute("BEGIN");
        co_await detail::pg_record_attempt(connection, job.a, job.updated, node_id_);
        co_await connection.execute("COMMIT");
        ++attempt_commit_count_;
    } catch (...) {
        error = std::current_exception();
    }
    if (error && connection.ok()) {
        try {
            co_await connection.execute("ROLLBACK");
        } catch (...) {
            connection.close();
        }
    }
    job.error = error;
    job.settled = true;
}

#define REVDESK_PG_PENDING_SELECT                                                                  \
    "SELECT d.id, d.subscription_id, d.event_type, d.attempts, d.next_attempt_at, "                \
    REVDESK_PG_EVENT_COLUMNS

inline asio::awaitable<std::vector<pending_delivery>> postgres_store::load_pending() {
    auto body = [](detail::pg_connection& c) -> asio::awaitable<std::vector<pending_delivery>> {
        std::vector<detail::pg_param> none;
        auto r = co_await c.query(REVDESK_PG_PENDING_SELECT
                                  " FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
                                  "WHERE d.state = 'pending' ORDER BY d.next_attempt_at, d.sequence",
                                  none);
        co_return detail::read_pending(r);
    };
    auto op = single<std::vector<pending_delivery>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::vector<pending_delivery>>
postgres_store::claim_due(unix_ms now, std::size_t limit, unix_ms lease_until) {
    auto body = [now, limit = detail::pg_row_limit(limit), lease_until, node = node_id_](
                    detail::pg_connection& c) -> asio::awaitable<std::vector<pending_delivery>> {
        std::vector<detail::pg_param> p{
            detail::pg_param::text(node), detail::pg_param::int64(lease_until),
            detail::pg_param::int64(now), detail::pg_param::int64(limit)};
        // The free deliveries and those whose lease expired come from two indexes, so that the
        // deliveries that live leases hold are never read; the oldest of both are claimed. SKIP
        // LOCKED passes over the rows that another node is claiming right now, and the lease
        // condition is checked again on rows that another node claimed since the query started,
        // so two nodes never claim the same delivery. Rows that one part locked but the limit
        // leaves out are unlocked when the statement ends.
        auto r = co_await c.query(
            "WITH free AS ("
            "SELECT d.id, d.next_attempt_at, d.sequence FROM deliveries AS d "
            "JOIN subscriptions AS s ON s.id = d.subscription_id "
            "WHERE d.state = 'pending' AND d.lease_owner IS NULL AND s.enabled "
            "AND d.next_attempt_at <= $3::bigint "
            "ORDER BY d.next_attempt_at, d.sequence LIMIT $4::bigint "
            "FOR UPDATE OF d SKIP LOCKED), "
            "expired AS ("
            "SELECT d.id, d.next_attempt_at, d.sequence FROM deliveries AS d "
            "JOIN subscriptions AS s ON s.id = d.subscription_id "
            "WHERE d.state = 'pending' AND d.lease_owner IS NOT NULL "
            "AND d.lease_until < $3::bigint AND s.enabled AND d.next_attempt_at <= $3::bigint "
            "ORDER BY d.next_attempt_at, d.sequence LIMIT $4::bigint "
            "FOR UPDATE OF d SKIP LOCKED), "
            "claimed AS ("
            "UPDATE deliveries SET lease_owner = $1::text, lease_until = $2::bigint "
            "WHERE id IN (SELECT c.id FROM (SELECT * FROM free UNION ALL SELECT * FROM expired) "
            "AS c ORDER BY c.next_attempt_at, c.sequence LIMIT $4::bigint) "
            "RETURNING id, subscription_id, event_type, attempts, next_attempt_at, event_id, "
            "sequence) " REVDESK_PG_PENDING_SELECT
            " FROM claimed AS d JOIN events AS e ON e.id = d.event_id "
            "ORDER BY d.next_attempt_at, d.sequence",
            p);
        co_return detail::read_pending(r);
    };
    auto op = single<std::vector<pending_delivery>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::vector<std::string>>
postgres_store::renew_leases(std::vector<std::string> const& delivery_ids, unix_ms lease_until) {
    auto body = [delivery_ids, lease_until, node = node_id_](
                    detail::pg_connection& c) -> asio::awaitable<std::vector<std::string>> {
        std::vector<detail::pg_param> p{detail::pg_param::text_array(delivery_ids),
                                        detail::pg_param::text(node),
                                        detail::pg_param::int64(lease_until)};
        // Locks in the order of the ids (see pg_cancel_pending).
        auto r = co_await c.query("UPDATE deliveries SET lease_until = $3::bigint "
                                  "WHERE id IN (SELECT id FROM deliveries "
                                  "WHERE id = ANY ($1::text[]) AND lease_owner = $2::text "
                                  "AND state = 'pending' ORDER BY id FOR UPDATE) RETURNING id",
                                  p);
        std::vector<std::string> kept;
        for (int row = 0; row < r.rows(); ++row) {
            kept.push_back(r.text(row, 0));
        }
        std::sort(kept.begin(), kept.end());
        std::vector<std::string> lost;
        for (auto const& id : delivery_ids) {
            if (!std::binary_search(kept.begin(), kept.end(), id)) {
                lost.push_back(id);
            }
        }
        co_return lost;
    };
    auto op = single<std::vector<std::string>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<void>
postgres_store::release_leases(std::vector<std::string> const& delivery_ids) {
    auto body = [delivery_ids,
                 node = node_id_](detail::pg_connection& c) -> asio::awaitable<bool> {
        std::vector<detail::pg_param> p{detail::pg_param::text_array(delivery_ids),
                                        detail::pg_param::text(node)};
        // Locks in the order of the ids (see pg_cancel_pending).
        auto r = co_await c.query("UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                                  "WHERE id IN (SELECT id FROM deliveries "
                                  "WHERE id = ANY ($1::text[]) AND lease_owner = $2::text "
                                  "ORDER BY id FOR UPDATE)",
                                  p);
        if (r.affected() > 0) {
            // Other nodes may claim them now.
            co_await detail::pg_notify_work(c);
        }
        co_return true;
    };
    auto op = transaction<bool>(std::move(body));
    co_await on_store(std::move(op));
}

// Attempts.

inline asio::awaitable<std::vector<attempt>>
postgres_store::list_attempts(std::string_view subscription_id, std::size_t limit) {
    auto body = [subscription_id = std::string(subscription_id), limit = detail::pg_row_limit(limit)](
                    detail::pg_connection& c) -> asio::awaitable<std::vector<attempt>> {
        std::vector<detail::pg_param> p{detail::pg_param::text(subscription_id),
                                        detail::pg_param::int64(limit)};
        auto r = co_await c.query("SELECT " REVDESK_PG_ATTEMPT_COLUMNS
                                  " FROM attempts WHERE subscription_id = $1 "
                                  "ORDER BY started_at DESC, sequence DESC LIMIT $2",
                                  p);
        std::vector<attempt> result;
        for (int row = 0; row < r.rows(); ++row) {
            result.push_back(detail::read_attempt(r, row));
        }
        co_return result;
    };
    auto op = single<std::vector<attempt>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<attempt_page>
postgres_store::list_attempts_page(std::string_view subscription_id, std::size_t limit,
                                   std::optional<std::string> const& cursor) {
    if (limit == 0) {
        throw std::invalid_argument("attempt page limit must be at least 1");
    }
    std::optional<detail::attempt_position> after;
    if (cursor) {
        after = detail::decode_attempt_cursor(*cursor);
    }
    auto page_size = static_cast<std::int64_t>(
        std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max() - 1));
    auto body = [subscription_id = std::string(subscription_id), page_size,
                 after](detail::pg_connection& c) -> asio::awaitable<attempt_page> {
        std::vector<detail::pg_param> p{detail::pg_param::text(subscription_id),
                                        detail::pg_param::int64(page_size + 1)};
        // One row more than the page shows whether another page follows.
        detail::pg_result r;
        if (after) {
            p.push_back(detail::pg_param::int64(after->started_at));
            p.push_back(detail::pg_param::int64(after->sequence));
            r = co_await c.query("SELECT " REVDESK_PG_ATTEMPT_COLUMNS
                                 " FROM attempts WHERE subscription_id = $1 "
                                 "AND (started_at, sequence) < ($3::bigint, $4::bigint) "
                                 "ORDER BY started_at DESC, sequence DESC LIMIT $2",
                                 p);
        } else {
            r = co_await c.query("SELECT " REVDESK_PG_ATTEMPT_COLUMNS
                                 " FROM attempts WHERE subscription_id = $1 "
                                 "ORDER BY started_at DESC, sequence DESC LIMIT $2",
                                 p);
        }
        attempt_page page;
        detail::attempt_position last;
        for (int row = 0; row < r.rows(); ++row) {
            if (static_cast<std::int64_t>(page.items.size()) == page_size) {
                page.next_cursor = detail::encode_attempt_cursor(last);
                break;
            }
            page.items.push_back(detail::read_attempt(r, row));
            last = {page.items.back().started_at, r.int64(row, 10)};
        }
        co_return page;
    };
    auto op = single<attempt_page>(std::move(body));
    co_return co_await on_store(std::move(op));
}

// API keys.

inline asio::awaitable<void> postgres_store::insert_key(api_key const& key) {
    auto body = [key = key](detail::pg_connection& c) -> asio::awaitable<bool> {
        std::vector<detail::pg_param> p{
            detail::pg_param::text(key.id),        detail::pg_param::text(key.workspace),
            detail::pg_param::text(key.digest),    detail::pg_param::text(key.hint),
            detail::pg_param::int64(key.created_at), detail::pg_param::boolean(key.revoked)};
        co_await c.query("INSERT INTO api_keys (id, workspace, digest, hint, created_at, revoked) "
                         "VALUES ($1, $2, $3, $4, $5, $6)",
                         p);
        co_return true;
    };
    auto op = single<bool>(std::move(body));
    co_await on_store(std::move(op));
}

inline asio::awaitable<std::vector<api_key>> postgres_store::load_keys() {
    auto body = [](detail::pg_connection& c) -> asio::awaitable<std::vector<api_key>> {
        std::vector<detail::pg_param> none;
        auto r = co_await c.query("SELECT id, workspace, digest, hint, created_at, revoked "
                                  "FROM api_keys ORDER BY created_at, id",
                                  none);
        std::vector<api_key> result;
        for (int row = 0; row < r.rows(); ++row) {
            api_key& key = result.emplace_back();
            key.id = r.text(row, 0);
            key.workspace = r.text(row, 1);
            key.digest = r.text(row, 2);
            key.hint = r.text(row, 3);
            key.created_at = r.int64(row, 4);
            key.revoked = r.boolean(row, 5);
        }
        co_return result;
    };
    auto op = single<std::vector<api_key>>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<bool> postgres_store::revoke_key(std::string_view id) {
    auto body = [id = std::string(id)](detail::pg_connection& c) -> asio::awaitable<bool> {
        std::vector<detail::pg_param> p{detail::pg_param::text(id)};
        auto r = co_await c.query("UPDATE api_keys SET revoked = true WHERE id = $1", p);
        co_return r.affected() != 0;
    };
    auto op = single<bool>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<std::size_t> postgres_store::purge_before(unix_ms cutoff) {
    auto body = [cutoff](detail::pg_connection& c) -> asio::awaitable<std::size_t> {
        // Deleting an event deletes its deliveries and their attempts (ON DELETE CASCADE).
        std::vector<detail::pg_param> p{detail::pg_param::int64(cutoff)};
        auto r = co_await c.query(
            "DELETE FROM events AS e WHERE e.created_at < $1 AND NOT EXISTS ("
            "SELECT 1 FROM deliveries AS p WHERE p.event_id = e.id AND p.state = 'pending')",
            p);
        co_return r.affected();
    };
    auto op = single<std::size_t>(std::move(body));
    co_return co_await on_store(std::move(op));
}

inline asio::awaitable<bool> postgres_store::ping() {
    auto op = ping_on_store();
    try {
        co_return co_await on_store(std::move(op));
    } catch (...) {
        co_return false;
    }
}

inline asio::awaitable<bool> postgres_store::ping_on_store() {
    auto connection = co_await acquire();
    std::vector<detail::pg_param> none;
    auto r = co_await connection->query("SELECT 1", none);
    co_return r.rows() == 1 && r.int64(0, 0) == 1;
}

} // namespace revdesk

#undef REVDESK_PG_SUBSCRIPTION_COLUMNS
#undef REVDESK_PG_EVENT_COLUMNS
#undef REVDESK_PG_DELIVERY_COLUMNS
#undef REVDESK_PG_ATTEMPT_COLUMNS
#undef REVDESK_PG_PENDING_SELECT
