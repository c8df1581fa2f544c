-- Where each worker keeps its exec sessions' files. The folder used to be derived from the database's
-- path (<file>.runs); it is now the worker's own setting (`bgq worker --runs-dir`), so a worker that
-- adopts a dead worker's tasks must read where that worker kept them. NULL: the default beside the file.
ALTER TABLE workers ADD COLUMN runs_dir TEXT;
