"""`amg serve`'s routes, one APIRouter per resource: avatars, jobs, the live stream, and the page with its docs."""
