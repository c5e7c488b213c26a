"""Scripted data changes between syncs (``POST /__emulator__/mutate``)."""

from __future__ import annotations

import time

from .dataset import ACTIVE, DELETED, ROLE_BITS, SITE_COURSE_ID, SUSPENDED, SUSPENDED_FLAG, Dataset

OPS = ("remove_course", "hide_course", "set_course_price", "suspend_enrolment", "unenrol", "enrol", "add_user",
       "remove_user", "set_user_email", "suspend_user", "hide_category", "set_group_mode")


class MutationError(ValueError):
    pass


def _int(op: dict, key: str) -> int:
    v = op.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.isdigit():
            return int(v)
        raise MutationError(f"{op.get('op')}: '{key}' must be an integer, got {v!r}")
    return v


def _course(ds: Dataset, op: dict) -> int:
    cid = _int(op, "course_id")
    if cid not in ds.courses:
        raise MutationError(f"{op['op']}: no course with id {cid}")
    if cid == SITE_COURSE_ID:
        raise MutationError(f"{op['op']}: course 1 is the site course and cannot be changed")
    return cid


def _user(ds: Dataset, op: dict) -> int:
    uid = _int(op, "user_id")
    if not ds.users.exists(uid):
        raise MutationError(f"{op['op']}: no (non-deleted) user with id {uid}")
    return uid


def _bump(ds: Dataset, cid: int) -> None:
    c = ds.courses[cid]
    c.timemodified = max(c.timemodified + 1, int(time.time()))


def apply_op(ds: Dataset, op: dict) -> dict:
    if not isinstance(op, dict) or op.get("op") not in OPS:
        raise MutationError(f"each op must be an object with 'op' one of {OPS}, got {op!r}")
    kind = op["op"]
    u = ds.users
    if kind == "remove_course":
        cid = _course(ds, op)
        n = ds.remove_course(cid)
        return {"op": kind, "course_id": cid, "enrolments_removed": n}
    if kind == "hide_course":
        cid = _course(ds, op)
        ds.courses[cid].visible = 0
        _bump(ds, cid)
        return {"op": kind, "course_id": cid}
    if kind == "hide_category":
        catid = _int(op, "category_id")
        if catid not in ds.categories:
            raise MutationError(f"hide_category: no category with id {catid}")
        # As Moodle's course_category::hide(): the category, the categories inside it and their
        # courses become hidden (visibleold keeps what each was).
        prefix = ds.categories[catid].path + "/"
        hidden = [c for c in ds.categories.values() if c.id == catid or c.path.startswith(prefix)]
        for cat in hidden:
            cat.visibleold, cat.visible = cat.visible, 0
        ids = {c.id for c in hidden}
        courses = [c for c in ds.courses.values() if c.categoryid in ids]
        for course in courses:
            course.visible = 0
            _bump(ds, course.id)
        return {"op": kind, "category_id": catid, "categories": sorted(ids), "courses": sorted(c.id for c in courses)}
    if kind == "set_group_mode":
        cid = _course(ds, op)
        mode = _int(op, "groupmode")
        if mode not in (0, 1, 2):
            raise MutationError("set_group_mode: groupmode must be 0 (none), 1 (separate) or 2 (visible)")
        ds.courses[cid].groupmode = mode
        _bump(ds, cid)
        return {"op": kind, "course_id": cid, "groupmode": mode}
    if kind == "set_course_price":
        cid = _course(ds, op)
        if "price" not in op:
            raise MutationError("set_course_price: 'price' is required (null clears it)")
        price = op["price"]
        field = next((f for f in ds.customfields if f.shortname == "price"), None)
        if field is None:
            raise MutationError("set_course_price: this dataset has no 'price' custom field")
        if price is not None and field.type == "number":
            try:
                price = float(price)
            except (TypeError, ValueError):
                raise MutationError(f"set_course_price: price must be a number or null, got {price!r}") from None
            price = int(price) if price == int(price) else price
        elif price is not None:
            price = str(price)
        old = ds.courses[cid].customvalues.get("price")
        if price is None:
            ds.courses[cid].customvalues.pop("price", None)
        else:
            ds.courses[cid].customvalues["price"] = price
        _bump(ds, cid)
        return {"op": kind, "course_id": cid, "old": old, "new": price}
    if kind in ("suspend_enrolment", "unenrol"):
        cid = _course(ds, op)
        uid = _int(op, "user_id")
        e = ds.enrolment(cid, uid)
        if e is None:
            raise MutationError(f"{kind}: user {uid} is not enrolled in course {cid}")
        if kind == "unenrol":
            ds.remove_enrolment(cid, uid)
        else:
            ds.set_enrolment(cid, uid, e[0], SUSPENDED)
        return {"op": kind, "course_id": cid, "user_id": uid}
    if kind == "enrol":
        cid = _course(ds, op)
        uid = _user(ds, op)
        role = op.get("role", "student")
        if role not in ROLE_BITS:
            raise MutationError(f"enrol: role must be one of {sorted(ROLE_BITS)}, got {role!r}")
        e = ds.enrolment(cid, uid)
        roles = (e[0] if e else 0) | ROLE_BITS[role]
        ds.set_enrolment(cid, uid, roles, ACTIVE)
        return {"op": kind, "course_id": cid, "user_id": uid, "role": role, "new": e is None}
    if kind == "add_user":
        missing = [k for k in ("username", "firstname", "lastname") if not isinstance(op.get(k), str) or not op[k]]
        if missing:
            raise MutationError(f"add_user: missing or empty {missing}")
        if u.by_username(op["username"]) is not None:
            raise MutationError(f"add_user: username {op['username']!r} already exists")
        email = op.get("email", "")
        if not isinstance(email, str):
            raise MutationError("add_user: email must be a string")
        uid = u.add(op["username"], op["firstname"], op["lastname"], email,
                    idnumber=str(op.get("idnumber", "")), suspended=bool(op.get("suspended", False)))
        return {"op": kind, "user_id": uid}
    if kind == "remove_user":
        uid = _user(ds, op)
        u.flags[uid - 1] |= DELETED
        u.invalidate()
        return {"op": kind, "user_id": uid}
    if kind == "set_user_email":
        uid = _user(ds, op)
        email = op.get("email")
        if not isinstance(email, str):
            raise MutationError("set_user_email: 'email' must be a string")
        old = u.email[uid - 1]
        u.email[uid - 1] = email
        u.invalidate()
        return {"op": kind, "user_id": uid, "old": old, "new": email}
    # suspend_user
    uid = _user(ds, op)
    u.flags[uid - 1] |= SUSPENDED_FLAG
    return {"op": kind, "user_id": uid}


def apply_ops(ds: Dataset, ops) -> list[dict]:
    """Apply ops in order under the dataset lock. On a bad op, raises MutationError whose
    message names the op index; the ops before it stay applied."""
    if not isinstance(ops, list):
        raise MutationError("body must be {\"ops\": [...]}")
    results = []
    with ds.lock:
        for i, op in enumerate(ops):
            try:
                results.append(apply_op(ds, op))
            except MutationError as e:
                raise MutationError(f"ops[{i}]: {e} ({len(results)} earlier op(s) applied)") from None
            finally:
                ds.touch()
    return results
